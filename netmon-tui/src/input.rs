//! Keys to actions: pure functions, no state, no I/O. The filter line has its
//! own map because letters are text there, not commands.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::app::{Action, SortColumn};

/// The normal key map (help screen: [`crate::ui::help::KEYS`]).
pub fn action_for(key: &KeyEvent) -> Option<Action> {
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        return match key.code {
            KeyCode::Char('c') => Some(Action::Quit),
            _ => None,
        };
    }
    Some(match key.code {
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Char('s') => Action::ToggleMonitoring,
        KeyCode::Char('r') => Action::Reset,
        KeyCode::Char('h' | '?') => Action::ToggleHelp,
        KeyCode::Char('t') => Action::CycleThreshold,
        KeyCode::Char('T') => Action::EnterThreshold,
        KeyCode::Char('e') => Action::EnterProcessThreshold,
        KeyCode::Char('x') => Action::ClearProcessThreshold,
        KeyCode::Char('p' | ' ') => Action::TogglePause,
        KeyCode::Char('o') => Action::CycleSort,
        KeyCode::Char('u') => Action::ToggleUnits,
        KeyCode::Char('R') => Action::Reload,
        KeyCode::Up | KeyCode::Char('k') => Action::Up,
        KeyCode::Left => Action::PrevDay,
        KeyCode::Right => Action::NextDay,
        KeyCode::Char('d') => Action::CycleSpan,
        KeyCode::Down | KeyCode::Char('j') => Action::Down,
        KeyCode::PageUp => Action::PageUp,
        KeyCode::PageDown => Action::PageDown,
        KeyCode::Home | KeyCode::Char('g') => Action::Top,
        KeyCode::End | KeyCode::Char('G') => Action::Bottom,
        KeyCode::Char('/') => Action::StartFilter,
        KeyCode::Enter => Action::Open,
        KeyCode::Esc => Action::Back,
        KeyCode::Tab => Action::NextView,
        KeyCode::BackTab => Action::PrevView,
        KeyCode::Char(c @ '1'..='9') => {
            let i = usize::from(c as u8 - b'1');
            Action::SortBy(*SortColumn::ALL.get(i)?)
        }
        _ => return None,
    })
}

/// Keys while typing a filter: text edits it, Enter keeps it, Esc drops it.
pub fn filter_action_for(key: &KeyEvent) -> Option<Action> {
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        return match key.code {
            KeyCode::Char('c') => Some(Action::Quit),
            _ => None,
        };
    }
    Some(match key.code {
        KeyCode::Char(c) => Action::FilterChar(c),
        KeyCode::Backspace => Action::FilterBackspace,
        KeyCode::Enter | KeyCode::Tab => Action::FilterDone,
        KeyCode::Esc => Action::FilterCancel,
        KeyCode::Up => Action::Up,
        KeyCode::Down => Action::Down,
        _ => return None,
    })
}

/// Keys while typing a rate on the input line.
pub fn prompt_action_for(key: &KeyEvent) -> Option<Action> {
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        return match key.code {
            KeyCode::Char('c') => Some(Action::Quit),
            _ => None,
        };
    }
    Some(match key.code {
        KeyCode::Char(c) => Action::PromptChar(c),
        KeyCode::Backspace => Action::PromptBackspace,
        KeyCode::Enter => Action::PromptDone,
        KeyCode::Esc => Action::PromptCancel,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn normal_key_map() {
        let table: &[(KeyCode, Option<Action>)] = &[
            (KeyCode::Char('q'), Some(Action::Quit)),
            (KeyCode::Char('s'), Some(Action::ToggleMonitoring)),
            (KeyCode::Char('r'), Some(Action::Reset)),
            (KeyCode::Char('h'), Some(Action::ToggleHelp)),
            (KeyCode::Char('?'), Some(Action::ToggleHelp)),
            (KeyCode::Char('t'), Some(Action::CycleThreshold)),
            (KeyCode::Up, Some(Action::Up)),
            (KeyCode::Char('k'), Some(Action::Up)),
            (KeyCode::Down, Some(Action::Down)),
            (KeyCode::Char('j'), Some(Action::Down)),
            (KeyCode::PageUp, Some(Action::PageUp)),
            (KeyCode::PageDown, Some(Action::PageDown)),
            (KeyCode::Home, Some(Action::Top)),
            (KeyCode::End, Some(Action::Bottom)),
            (KeyCode::Char('/'), Some(Action::StartFilter)),
            (KeyCode::Enter, Some(Action::Open)),
            (KeyCode::Esc, Some(Action::Back)),
            (KeyCode::Tab, Some(Action::NextView)),
            (KeyCode::BackTab, Some(Action::PrevView)),
            (KeyCode::Char('1'), Some(Action::SortBy(SortColumn::Pid))),
            (KeyCode::Char('2'), Some(Action::SortBy(SortColumn::Name))),
            (KeyCode::Char('4'), Some(Action::SortBy(SortColumn::Up))),
            (
                KeyCode::Char('9'),
                Some(Action::SortBy(SortColumn::Connections)),
            ),
            (KeyCode::Char('T'), Some(Action::EnterThreshold)),
            (KeyCode::Char('e'), Some(Action::EnterProcessThreshold)),
            (KeyCode::Char('x'), Some(Action::ClearProcessThreshold)),
            (KeyCode::Char('p'), Some(Action::TogglePause)),
            (KeyCode::Char(' '), Some(Action::TogglePause)),
            (KeyCode::Char('o'), Some(Action::CycleSort)),
            (KeyCode::Char('u'), Some(Action::ToggleUnits)),
            (KeyCode::Char('R'), Some(Action::Reload)),
            (KeyCode::Char('0'), None),
            (KeyCode::Char('z'), None),
            (KeyCode::F(5), None),
        ];
        for (code, want) in table {
            assert_eq!(action_for(&key(*code)), *want, "{code:?}");
        }
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(action_for(&ctrl_c), Some(Action::Quit));
        let ctrl_s = KeyEvent::new(KeyCode::Char('s'), KeyModifiers::CONTROL);
        assert_eq!(action_for(&ctrl_s), None);
    }

    #[test]
    fn filter_key_map_types_letters() {
        let table: &[(KeyCode, Option<Action>)] = &[
            (KeyCode::Char('q'), Some(Action::FilterChar('q'))),
            (KeyCode::Char('s'), Some(Action::FilterChar('s'))),
            (KeyCode::Backspace, Some(Action::FilterBackspace)),
            (KeyCode::Enter, Some(Action::FilterDone)),
            (KeyCode::Esc, Some(Action::FilterCancel)),
            (KeyCode::Down, Some(Action::Down)),
            (KeyCode::F(1), None),
        ];
        for (code, want) in table {
            assert_eq!(filter_action_for(&key(*code)), *want, "{code:?}");
        }
    }

    #[test]
    fn prompt_key_map_types_rates() {
        let table: &[(KeyCode, Option<Action>)] = &[
            (KeyCode::Char('5'), Some(Action::PromptChar('5'))),
            (KeyCode::Char('T'), Some(Action::PromptChar('T'))),
            (KeyCode::Char('/'), Some(Action::PromptChar('/'))),
            (KeyCode::Backspace, Some(Action::PromptBackspace)),
            (KeyCode::Enter, Some(Action::PromptDone)),
            (KeyCode::Esc, Some(Action::PromptCancel)),
            (KeyCode::Tab, None),
        ];
        for (code, want) in table {
            assert_eq!(prompt_action_for(&key(*code)), *want, "{code:?}");
        }
    }
}
