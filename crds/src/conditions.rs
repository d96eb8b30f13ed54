//! kstatus-style conditions: the pure part of writing them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// A condition as a reconciler wants it, before transition times are settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredCondition {
    pub type_: &'static str,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

impl DesiredCondition {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// The conditions to write: `desired` in order, each keeping the `lastTransitionTime` of the
/// existing condition of its type when its status did not change (so a periodic resync does not
/// look like a transition). Conditions absent from `desired` are dropped.
pub fn settle(
    existing: &[Condition],
    desired: &[DesiredCondition],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    desired
        .iter()
        .map(|want| {
            let status = if want.status { "True" } else { "False" };
            let last_transition_time = existing
                .iter()
                .find(|c| c.type_ == want.type_ && c.status == status)
                .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
            Condition {
                type_: want.type_.to_string(),
                status: status.to_string(),
                reason: want.reason.clone(),
                message: want.message.clone(),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// The condition of `type_`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn unchanged_status_keeps_transition_time_and_changed_status_moves_it() {
        let first = settle(
            &[],
            &[
                DesiredCondition::new("Ready", true, "Accepted", "ok"),
                DesiredCondition::new("Accepted", true, "Valid", "ok"),
            ],
            Some(1),
            &at(100),
        );
        assert_eq!(first[0].last_transition_time, at(100));
        assert_eq!(first[0].status, "True");

        let second = settle(
            &first,
            &[
                DesiredCondition::new("Ready", true, "Accepted", "still ok"),
                DesiredCondition::new("Accepted", false, "InvalidSpec", "bad"),
            ],
            Some(2),
            &at(200),
        );
        assert_eq!(second[0].last_transition_time, at(100));
        assert_eq!(second[0].message, "still ok");
        assert_eq!(second[0].observed_generation, Some(2));
        assert_eq!(second[1].last_transition_time, at(200));
        assert_eq!(second[1].status, "False");
    }

    #[test]
    fn conditions_left_out_are_dropped() {
        let first = settle(
            &[],
            &[DesiredCondition::new("Stalled", true, "InvalidSpec", "bad")],
            Some(1),
            &at(1),
        );
        let second = settle(
            &first,
            &[DesiredCondition::new("Ready", true, "Accepted", "ok")],
            Some(2),
            &at(2),
        );
        assert!(find(&second, "Stalled").is_none());
        assert_eq!(find(&second, "Ready").unwrap().reason, "Accepted");
    }
}
