//! Probe.
use sluice_engine::sql::{Outcome, Session, SessionConfig};

fn script(query: &str, events: u64) -> String {
    let path = format!("{}/../examples/nexmark/{query}.sql", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap();
    text.replace(
        "'events' = '10000000'",
        &format!("'events' = '{events}', 'rate' = '1000'"),
    )
}

#[test]
fn probe() {
    for q in [
        "q0", "q1", "q2", "q3", "q4", "q5", "q6", "q7", "q8", "q10", "q11", "q12", "q13", "q14",
        "q15", "q16", "q17", "q20", "q21", "q22",
    ] {
        let text = script(q, 20_000);
        let text = regex_strip_insert(&text);
        let mut session = Session::new(SessionConfig::default());
        match session.execute(&text) {
            Ok(outcomes) => {
                let last = outcomes.last().unwrap();
                let rows = last.rows().unwrap();
                let kind = matches!(last, Outcome::Changelog { .. });
                println!("{q}: OK changelog={kind} rows={} first={:?}", rows.len(), rows.first());
            }
            Err(e) => println!("{q}: ERR {e}"),
        }
    }
}

fn regex_strip_insert(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("INSERT INTO"))
        .collect::<Vec<_>>()
        .join("\n")
}
