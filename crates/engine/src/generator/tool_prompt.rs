//! Tools for models whose chat template does not render them: the functions are described in
//! a system turn in the engine's own words (the Hermes convention that Qwen's and many other
//! templates follow), earlier calls become `<tool_call>` text of their assistant turns, and
//! tool results become user turns wrapped in `<tool_response>`. The model is asked to answer
//! a call as `<tool_call>{"name": …, "arguments": {…}}</tool_call>`, which the API layer
//! reads back into `tool_calls`.

use gateway_backend::{ChatTurn, ToolSpec};

/// What opens the description of the tools.
const TOOLS_INTRODUCTION: &str = "You may call one or more functions to answer. These are \
     the functions, as JSON, between <tools> and </tools>:\n<tools>\n";

/// What follows the description: how to call one.
const CALLING_CONVENTION: &str = "</tools>\nTo call a function, answer with nothing but \
     one line per call, each as\n<tool_call>\n{\"name\": <function name>, \"arguments\": \
     <arguments as a JSON object>}\n</tool_call>\nOtherwise answer in plain text.";

/// `turns` with `tools` described in the system turn (added at the start when there is none),
/// earlier tool calls written as text and tool results as user turns.
pub(super) fn generic_tool_turns(turns: &[ChatTurn], tools: &[ToolSpec]) -> Vec<ChatTurn> {
    let mut rewritten: Vec<ChatTurn> = turns.iter().map(plain_turn).collect();
    if tools.is_empty() {
        return rewritten;
    }
    let description = describe(tools);
    match rewritten.first_mut() {
        Some(first) if first.role == "system" => {
            first.content = format!("{}\n\n{description}", first.content);
        }
        _ => rewritten.insert(0, ChatTurn::new("system", description)),
    }
    rewritten
}

/// The description of `tools` and how to call them.
fn describe(tools: &[ToolSpec]) -> String {
    let mut text = TOOLS_INTRODUCTION.to_owned();
    for tool in tools {
        text.push_str(&serde_json::to_string(tool).unwrap_or_default());
        text.push('\n');
    }
    text.push_str(CALLING_CONVENTION);
    text
}

/// A turn without tool fields: calls as `<tool_call>` text, a tool result as a user turn.
fn plain_turn(turn: &ChatTurn) -> ChatTurn {
    if turn.role == "tool" {
        let content = format!("<tool_response>\n{}\n</tool_response>", turn.content);
        return ChatTurn::new("user", content);
    }
    let mut content = turn.content.clone();
    for call in &turn.tool_calls {
        let call = serde_json::json!({
            "name": call.function.name,
            "arguments": call.function.arguments,
        });
        if !content.is_empty() {
            content.push('\n');
        }
        content.push_str(&format!("<tool_call>\n{call}\n</tool_call>"));
    }
    ChatTurn::new(turn.role.clone(), content)
}

#[cfg(test)]
mod tests {
    use gateway_backend::{FunctionSpec, TurnFunctionCall, TurnToolCall};

    use super::*;

    fn weather() -> ToolSpec {
        ToolSpec {
            kind: "function",
            function: FunctionSpec {
                name: "get_weather".to_owned(),
                description: Some("The weather in a city".to_owned()),
                parameters: serde_json::json!({"type": "object"}),
            },
        }
    }

    #[test]
    fn tools_join_the_system_turn_or_open_the_conversation() {
        let user = ChatTurn::new("user", "Weather in Paris?");
        let turns = generic_tool_turns(std::slice::from_ref(&user), &[weather()]);
        assert_eq!(turns.len(), 2);
        assert_eq!(turns[0].role, "system");
        assert!(
            turns[0].content.contains(r#""name":"get_weather""#),
            "{}",
            turns[0].content
        );
        assert!(turns[0].content.contains("<tool_call>"));
        assert_eq!(turns[1], user);
        let system = ChatTurn::new("system", "Be brief.");
        let turns = generic_tool_turns(&[system, user], &[weather()]);
        assert_eq!(turns.len(), 2);
        assert!(turns[0].content.starts_with("Be brief.\n\nYou may call"));
    }

    #[test]
    fn calls_and_results_become_text() {
        let mut call = ChatTurn::new("assistant", "");
        call.tool_calls.push(TurnToolCall {
            id: "call_1".to_owned(),
            kind: "function",
            function: TurnFunctionCall {
                name: "get_weather".to_owned(),
                arguments: serde_json::json!({"city": "Paris"}),
            },
        });
        let mut result = ChatTurn::new("tool", "18 degrees");
        result.tool_call_id = Some("call_1".to_owned());
        let turns = generic_tool_turns(&[call, result], &[]);
        let call = turns[0]
            .content
            .strip_prefix("<tool_call>\n")
            .and_then(|rest| rest.strip_suffix("\n</tool_call>"))
            .map(serde_json::from_str::<serde_json::Value>);
        assert_eq!(
            call.and_then(Result::ok),
            Some(serde_json::json!({"name": "get_weather", "arguments": {"city": "Paris"}}))
        );
        assert!(turns[0].tool_calls.is_empty());
        assert_eq!(turns[1].role, "user");
        assert_eq!(
            turns[1].content,
            "<tool_response>\n18 degrees\n</tool_response>"
        );
    }
}
