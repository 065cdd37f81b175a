//! Chat templates: renders a conversation into a model's prompt string with the model's own
//! Jinja template (`chat_template.jinja` of an imported model directory), the way Hugging Face
//! `transformers` does it: `trim_blocks` and `lstrip_blocks` on, the variables `messages`,
//! `add_generation_prompt`, `bos_token`, `eos_token` (plus any extra ones the caller passes),
//! the function `raise_exception(message)`, the `tojson` filter, and Python string and dict
//! methods (`.strip()`, `.startswith()`, `.items()`, …) through `minijinja-contrib`'s
//! `pycompat`.
//!
//! Every rendering runs on a fuel budget ([`FUEL`]): a template that loops (or builds huge
//! strings) fails with [`ChatTemplateError::OutOfFuel`] within milliseconds instead of holding
//! a thread for ever. [`ChatTemplate::check_fuel`] renders a small probe conversation, so that a
//! model whose template cannot even render that within the budget is refused at load.

use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, Error, ErrorKind, Value};
use serde::Serialize;

/// Name the template is registered under.
const TEMPLATE_NAME: &str = "chat";

/// The fuel budget of one rendering (minijinja's unit: about one instruction executed or 64
/// bytes of data created; the costs may change between minijinja releases). Measured with
/// SmolLM2's template: a one-message chat takes 43 fuel, 20 turns of 1,000 characters 1,774,
/// 100 turns of 5,000 characters (500 KB, more than a 128k-token context) 33,799, and the
/// largest conversation the default request body limit lets through (8 MiB of text, as one
/// message or 4,000 turns) 500,000 to 600,000. Four million covers that last one six times
/// over and a full context a hundred times, stops a looping template within a fraction of a
/// second (tens of nanoseconds per fuel) and bounds what a template can allocate to about
/// 256 MB.
pub const FUEL: u64 = 4_000_000;

/// The conversation [`ChatTemplate::check_fuel`] renders: the turns every chat template
/// accepts.
const PROBE: [(&str, &str); 3] = [
    ("user", "Hello!"),
    ("assistant", "Hello! How can I help you today?"),
    ("user", "Tell me a short story."),
];

/// Why a chat template could not be compiled or rendered.
#[derive(Debug, thiserror::Error)]
pub enum ChatTemplateError {
    /// The template does not parse.
    #[error("invalid chat template: {0}")]
    Syntax(#[source] Error),
    /// Rendering failed (an undefined operation, a type error, …). Only minijinja's kind of
    /// error and the template's line are kept: its detail may quote the values rendered, that
    /// is the messages.
    #[error("cannot render chat template: {kind}{}", at_line(*.line))]
    Render {
        /// What kind of failure.
        kind: ErrorKind,
        /// The template's line, when minijinja knows it.
        line: Option<usize>,
    },
    /// The template itself rejected the conversation with `raise_exception(message)`.
    #[error("chat template rejected the conversation: {0}")]
    Rejected(String),
    /// Rendering used up its fuel budget ([`FUEL`]): the template loops or does far more work
    /// than any real conversation needs. A fault of the model, not of the request; the message
    /// says nothing of the template's internals.
    #[error("the chat template exceeded its work limit of {FUEL} fuel")]
    OutOfFuel,
}

/// Variables of one rendering besides `messages`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RenderOptions {
    /// Whether to end with the header of an assistant turn (`add_generation_prompt`).
    pub add_generation_prompt: bool,
    /// The tokenizer's BOS token (`bos_token`), empty when it has none.
    pub bos_token: String,
    /// The tokenizer's EOS token (`eos_token`), empty when it has none.
    pub eos_token: String,
}

/// A compiled chat template.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    /// Whether the template reads a `tools` variable, found once at compile time.
    reads_tools: bool,
}

impl ChatTemplate {
    /// Compiles `source` (Jinja) with Hugging Face's settings.
    pub fn new(source: &str) -> Result<Self, ChatTemplateError> {
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(ChatTemplateError::Syntax)?;
        env.set_syntax(syntax);
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.set_fuel(Some(FUEL));
        env.add_template_owned(TEMPLATE_NAME, source.to_owned())
            .map_err(ChatTemplateError::Syntax)?;
        let reads_tools = env
            .get_template(TEMPLATE_NAME)
            .is_ok_and(|template| template.undeclared_variables(false).contains("tools"));
        Ok(Self { env, reads_tools })
    }

    /// Renders `messages` (a list of `{"role", "content", …}` objects, passed to the template
    /// as they are) with `options`.
    pub fn render<M: Serialize + ?Sized>(
        &self,
        messages: &M,
        options: &RenderOptions,
    ) -> Result<String, ChatTemplateError> {
        self.render_with_tools(messages, None::<&()>, options)
    }

    /// Whether the template reads a `tools` variable (the functions the model may call), as
    /// Hugging Face's tool-calling templates do.
    pub fn renders_tools(&self) -> bool {
        self.reads_tools
    }

    /// Renders `messages` with `tools` (the template's `tools` variable; `none` when absent)
    /// and `options`.
    pub fn render_with_tools<M: Serialize + ?Sized, T: Serialize + ?Sized>(
        &self,
        messages: &M,
        tools: Option<&T>,
        options: &RenderOptions,
    ) -> Result<String, ChatTemplateError> {
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(render_failure)?;
        let ctx = minijinja::context! {
            messages => Value::from(minijinja::value::Serde(messages)),
            tools => tools.map(|tools| Value::from(minijinja::value::Serde(tools))),
            add_generation_prompt => options.add_generation_prompt,
            bos_token => options.bos_token.as_str(),
            eos_token => options.eos_token.as_str(),
        };
        template.render(ctx).map_err(|e| {
            if e.kind() == ErrorKind::OutOfFuel {
                return ChatTemplateError::OutOfFuel;
            }
            let rejected = e.kind() == ErrorKind::InvalidOperation
                && e.detail().is_some_and(|d| d.starts_with(REJECTED_PREFIX));
            match e.detail().and_then(|d| d.strip_prefix(REJECTED_PREFIX)) {
                Some(message) if rejected => ChatTemplateError::Rejected(message.to_owned()),
                _ => render_failure(e),
            }
        })
    }

    /// Renders a small probe conversation with `options` to check that the template stays
    /// within its fuel budget: [`ChatTemplateError::OutOfFuel`] if it does not. Other render
    /// errors (a template that insists on other roles, say) are left to the requests.
    pub fn check_fuel(&self, options: &RenderOptions) -> Result<(), ChatTemplateError> {
        let probe: Vec<_> = PROBE
            .iter()
            .map(|(role, content)| Turn { role, content })
            .collect();
        match self.render(&probe, options) {
            Err(ChatTemplateError::OutOfFuel) => Err(ChatTemplateError::OutOfFuel),
            _ => Ok(()),
        }
    }
}

/// One turn of the probe conversation.
#[derive(Serialize)]
struct Turn<'a> {
    role: &'a str,
    content: &'a str,
}

/// A render error without minijinja's detail (see [`ChatTemplateError::Render`]).
fn render_failure(error: Error) -> ChatTemplateError {
    ChatTemplateError::Render {
        kind: error.kind(),
        line: error.line(),
    }
}

/// ` (line N)`, or nothing when the line is not known.
fn at_line(line: Option<usize>) -> String {
    line.map(|line| format!(" (line {line})"))
        .unwrap_or_default()
}

/// Marks the errors `raise_exception` raises, to tell them from other render errors.
const REJECTED_PREFIX: &str = "raise_exception: ";

/// The template function `raise_exception(message)`: fails the rendering with `message`.
fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(
        ErrorKind::InvalidOperation,
        format!("{REJECTED_PREFIX}{message}"),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' \
        + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}\
        {{ '<|im_start|>assistant\\n' }}{% endif %}";

    #[test]
    fn renders_chatml_with_generation_prompt() {
        let t = ChatTemplate::new(CHATML).unwrap();
        let messages = json!([{"role": "user", "content": "Hi"}]);
        let options = RenderOptions {
            add_generation_prompt: true,
            ..RenderOptions::default()
        };
        assert_eq!(
            t.render(&messages, &options).unwrap(),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn tools_reach_a_template_that_reads_them() {
        let with_tools = ChatTemplate::new(
            "{% if tools %}{% for t in tools %}[{{ t.function.name }}]{% endfor %}{% endif %}\
             {% for m in messages %}{{ m.content }}{% endfor %}",
        )
        .unwrap();
        assert!(with_tools.renders_tools());
        assert!(!ChatTemplate::new(CHATML).unwrap().renders_tools());
        let messages = json!([{"role": "user", "content": "Hi"}]);
        let tools = json!([{"type": "function", "function": {"name": "f"}}]);
        let options = RenderOptions::default();
        let rendered = with_tools.render_with_tools(&messages, Some(&tools), &options);
        assert_eq!(rendered.unwrap(), "[f]Hi");
        assert_eq!(with_tools.render(&messages, &options).unwrap(), "Hi");
    }

    #[test]
    fn raise_exception_rejects_with_its_message() {
        let t = ChatTemplate::new(
            "{% if messages[0]['role'] != 'user' %}{{ raise_exception('user first') }}{% endif %}",
        )
        .unwrap();
        let err = t
            .render(
                &json!([{"role": "assistant", "content": "x"}]),
                &RenderOptions::default(),
            )
            .unwrap_err();
        assert!(
            matches!(&err, ChatTemplateError::Rejected(m) if m == "user first"),
            "{err}"
        );
    }

    #[test]
    fn python_methods_tojson_and_block_trimming() {
        let t = ChatTemplate::new(
            "{% for m in messages %}\n  {{ m['content'].strip().upper() }}|{{ m | tojson }}\n{% endfor %}",
        )
        .unwrap();
        let out = t
            .render(
                &json!([{"role": "user", "content": " a "}]),
                &RenderOptions::default(),
            )
            .unwrap();
        assert_eq!(out, "  A|{\"content\": \" a \", \"role\": \"user\"}\n");
    }

    const LOOPING: &str = "{% for i in range(100000) %}{% for j in range(100000) %}{{ j }}\
        {% endfor %}{% endfor %}";

    #[test]
    fn a_looping_template_runs_out_of_fuel_fast() {
        let t = ChatTemplate::new(LOOPING).unwrap();
        let start = std::time::Instant::now();
        let err = t.render(&json!([]), &RenderOptions::default()).unwrap_err();
        assert!(matches!(err, ChatTemplateError::OutOfFuel), "{err}");
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        assert!(!err.to_string().contains("range"), "{err}");
    }

    #[test]
    fn the_fuel_check_refuses_a_looping_template_only() {
        let options = RenderOptions::default();
        let looping = ChatTemplate::new(LOOPING).unwrap();
        assert!(matches!(
            looping.check_fuel(&options),
            Err(ChatTemplateError::OutOfFuel)
        ));
        ChatTemplate::new(CHATML)
            .unwrap()
            .check_fuel(&options)
            .unwrap();
        let picky = ChatTemplate::new("{{ raise_exception('system first') }}").unwrap();
        picky.check_fuel(&options).unwrap();
    }

    #[test]
    fn a_long_conversation_renders_within_the_budget() {
        let t = ChatTemplate::new(CHATML).unwrap();
        let turn = json!({"role": "user", "content": "x".repeat(2_000)});
        let messages = serde_json::Value::Array(vec![turn; 4_000]);
        assert!(t.render(&messages, &RenderOptions::default()).is_ok());
    }

    #[test]
    fn render_errors_leave_the_values_out() {
        let t = ChatTemplate::new("{{ messages[0]['content'] | int / 0 }}").unwrap();
        let err = t
            .render(
                &json!([{"role": "user", "content": "123456789"}]),
                &RenderOptions::default(),
            )
            .unwrap_err();
        assert!(matches!(err, ChatTemplateError::Render { .. }), "{err}");
        assert!(!err.to_string().contains("123456789"), "{err}");
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn syntax_errors_are_reported() {
        assert!(matches!(
            ChatTemplate::new("{% for %}"),
            Err(ChatTemplateError::Syntax(_))
        ));
    }
}
