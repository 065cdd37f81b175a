//! Stop strings across token boundaries: generated text goes through a [`StopMatcher`], which
//! releases only text that cannot be the start of a stop string, holds back a possible start
//! until the following text decides, and cuts the output before the first stop string, which
//! is never released.

/// What one piece of text released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Released {
    /// Text that may be shown.
    pub(crate) text: String,
    /// Whether a stop string was found (nothing more is released after it).
    pub(crate) stopped: bool,
}

/// Watches generated text for stop strings.
#[derive(Debug, Clone, Default)]
pub(crate) struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

impl StopMatcher {
    /// A matcher for `stops` (empty strings are ignored).
    pub(crate) fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
        }
    }

    /// Adds the next piece of text and releases what is decided.
    pub(crate) fn push(&mut self, text: &str) -> Released {
        self.held.push_str(text);
        let first_stop = self
            .stops
            .iter()
            .filter_map(|stop| self.held.find(stop.as_str()))
            .min();
        if let Some(at) = first_stop {
            let text = self.held[..at].to_owned();
            self.held.clear();
            return Released {
                text,
                stopped: true,
            };
        }
        let keep = self.longest_partial_stop();
        let cut = self.held.len() - keep;
        let rest = self.held.split_off(cut);
        let text = std::mem::replace(&mut self.held, rest);
        Released {
            text,
            stopped: false,
        }
    }

    /// Releases the text held back when the generation ends for another reason.
    pub(crate) fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// Length in bytes of the longest suffix of the held text that starts a stop string.
    fn longest_partial_stop(&self) -> usize {
        let held = self.held.as_str();
        held.char_indices()
            .map(|(start, _)| start)
            .find(|&start| {
                let suffix = &held[start..];
                self.stops.iter().any(|stop| stop.starts_with(suffix))
            })
            .map_or(0, |start| held.len() - start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(stops: &[&str]) -> StopMatcher {
        let stops: Vec<String> = stops.iter().map(|s| (*s).to_owned()).collect();
        StopMatcher::new(&stops)
    }

    fn released(text: &str, stopped: bool) -> Released {
        Released {
            text: text.to_owned(),
            stopped,
        }
    }

    #[test]
    fn text_without_stops_passes_through() {
        let mut m = matcher(&[]);
        assert_eq!(m.push("Hello"), released("Hello", false));
        assert_eq!(m.finish(), "");
    }

    #[test]
    fn a_stop_across_tokens_is_held_back_and_never_released() {
        let mut m = matcher(&["END"]);
        assert_eq!(m.push("The E"), released("The ", false));
        assert_eq!(m.push("N"), released("", false));
        assert_eq!(m.push("D and more"), released("", true));
    }

    #[test]
    fn a_false_start_is_released_when_the_text_diverges() {
        let mut m = matcher(&["END"]);
        assert_eq!(m.push("EN"), released("", false));
        assert_eq!(m.push("ough"), released("ENough", false));
        assert_eq!(m.push("E"), released("", false));
        assert_eq!(m.finish(), "E");
    }

    #[test]
    fn the_earliest_of_several_stops_wins() {
        let mut m = matcher(&["world", "lo"]);
        assert_eq!(m.push("Hello world"), released("Hel", true));
        let mut m = matcher(&["\n"]);
        assert_eq!(m.push("Paris.\nNext"), released("Paris.", true));
    }

    #[test]
    fn multibyte_text_is_cut_on_character_boundaries() {
        let mut m = matcher(&["é!"]);
        assert_eq!(m.push("café"), released("caf", false));
        assert_eq!(m.push("!"), released("", true));
    }
}
