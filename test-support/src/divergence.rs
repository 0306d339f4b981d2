//! What a replay of an edited trace must show: the edited value, or a divergence at the
//! event where it first reaches a checked system call.

use crate::run::{Run, FAILED};

/// The event number in `replay diverged at event N`, if the text has one (the
/// recorder's divergence message, `recorder::Error::Divergence`).
pub fn divergence_event(text: &str) -> Option<u64> {
    const SAYS: &str = "diverged at event ";
    let rest = &text[text.find(SAYS)? + SAYS.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Asserts that `replayed` failed with a divergence at exactly `event`.
#[track_caller]
pub fn assert_diverged_at(replayed: &Run, event: u64) {
    assert_eq!(
        replayed.status,
        FAILED,
        "the replay should report a divergence\n{}",
        replayed.show()
    );
    let at = divergence_event(&replayed.stderr_str());
    assert_eq!(
        at,
        Some(event),
        "the replay should diverge at event {event}\n{}",
        replayed.show()
    );
}

/// Asserts the outcome of replaying a trace in which event `edited` was changed so that
/// the program must print `edited_line` instead of `original_line`: either the replay
/// prints the edited line (and ends as recorded), or it stops with a divergence (the
/// recorder's message, not any failure) at the edited event or at the write (event
/// `write`) that carries the edited value.
#[track_caller]
pub fn assert_edit_seen(
    replayed: &Run,
    recorded: &Run,
    edited: u64,
    write: u64,
    original_line: &str,
    edited_line: &str,
) {
    let out = replayed.stdout_str();
    assert!(
        !out.contains(original_line),
        "the replay printed the recorded value `{original_line}` although event {edited} was edited\n{}",
        replayed.show()
    );
    if replayed.status == FAILED {
        let at = divergence_event(&replayed.stderr_str());
        assert!(
            at == Some(write) || at == Some(edited),
            "the replay failed, but not with a divergence at event {edited} (the edit) or {write} (the write that carries the edited value): it names {at:?}\n{}",
            replayed.show()
        );
    } else {
        assert!(
            out.contains(edited_line),
            "the replay neither printed the edited value `{edited_line}` nor reported a divergence\n{}",
            replayed.show()
        );
        assert_eq!(replayed.status, recorded.status, "{}", replayed.show());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_divergence_message_names_its_event_and_other_messages_do_not_count() {
        let says = "chaos: replay diverged at event 12: expected write, but the program exited";
        assert_eq!(divergence_event(says), Some(12));
        assert_eq!(divergence_event("chaos: event 12 is damaged"), None);
    }
}
