//! A policy's status and Events as pure functions of its assessment.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use zastava_crds::conditions::{self, DesiredCondition};
use zastava_crds::policy::PolicyMode;

use crate::validate::Assessment;

pub const ACCEPTED: &str = "Accepted";
pub const READY: &str = "Ready";
pub const STALLED: &str = "Stalled";

/// Conditions for a policy: `Accepted` and `Ready` always; `Stalled` only while it is unusable
/// (kstatus reads an abnormal-true `Stalled` as failed, so it must be absent otherwise).
pub fn policy_conditions(assessment: &Assessment, mode: PolicyMode) -> Vec<DesiredCondition> {
    match assessment.problems.first() {
        None => {
            let mut message = format!(
                "{mode:?} policy accepted with {} public key(s)",
                assessment.resolved_keys
            );
            if assessment.resolved_identities > 0 {
                let roots = assessment
                    .resolved_certificates
                    .iter()
                    .filter(|c| c.usage == "trustRoots")
                    .count();
                message.push_str(&format!(
                    ", {} keyless identity(ies) and {roots} trust root(s)",
                    assessment.resolved_identities
                ));
            }
            vec![
                DesiredCondition::new(ACCEPTED, true, "Valid", message.clone()),
                DesiredCondition::new(READY, true, ACCEPTED, message),
            ]
        }
        Some(first) => {
            let reason = first.reason.as_str();
            let message = rejection_message(assessment);
            vec![
                DesiredCondition::new(ACCEPTED, false, reason, message.clone()),
                DesiredCondition::new(READY, false, reason, message.clone()),
                DesiredCondition::new(STALLED, true, reason, message),
            ]
        }
    }
}

/// Every problem, field first, in one line short enough for a condition and an Event note.
pub fn rejection_message(assessment: &Assessment) -> String {
    let all = assessment
        .problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    const LIMIT: usize = 1000;
    if all.len() <= LIMIT {
        return all;
    }
    let mut cut = LIMIT;
    while !all.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &all[..cut])
}

/// The Event to record for this reconciliation: one when acceptance changes or a rejection's
/// message changes, none on a resync that found nothing new.
pub fn transition_event(
    previous: &[Condition],
    desired: &[DesiredCondition],
) -> Option<PolicyEvent> {
    let now = desired.iter().find(|c| c.type_ == ACCEPTED)?;
    let before = conditions::find(previous, ACCEPTED);
    let unchanged = before.is_some_and(|b| {
        (b.status == "True") == now.status && b.reason == now.reason && b.message == now.message
    });
    if unchanged {
        return None;
    }
    Some(if now.status {
        PolicyEvent {
            warning: false,
            reason: "PolicyAccepted".to_string(),
            note: now.message.clone(),
        }
    } else {
        PolicyEvent {
            warning: true,
            reason: format!("PolicyRejected{}", now.reason),
            note: now.message.clone(),
        }
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyEvent {
    pub warning: bool,
    pub reason: String,
    pub note: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::{Problem, Reason};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn rejected(message: &str) -> Assessment {
        Assessment {
            problems: vec![Problem {
                field: "spec.verify.signature.keys[0].pem".into(),
                reason: Reason::InvalidKey,
                message: message.into(),
            }],
            ..Assessment::default()
        }
    }

    fn written(desired: &[DesiredCondition]) -> Vec<Condition> {
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(1).unwrap());
        conditions::settle(&[], desired, Some(1), &now)
    }

    #[test]
    fn accepted_policy_is_ready_and_not_stalled() {
        let c = policy_conditions(&Assessment::default(), PolicyMode::Audit);
        assert_eq!(c.len(), 2);
        assert!(c.iter().all(|c| c.status));
        assert!(c.iter().all(|c| c.type_ != STALLED));
        assert_eq!(c[1].message, "Audit policy accepted with 0 public key(s)");
    }

    #[test]
    fn rejected_policy_names_the_field_in_every_condition() {
        let c = policy_conditions(&rejected("not PEM"), PolicyMode::Enforce);
        let ready = c.iter().find(|c| c.type_ == READY).unwrap();
        assert!(!ready.status);
        assert_eq!(ready.reason, "InvalidKey");
        assert_eq!(ready.message, "spec.verify.signature.keys[0].pem: not PEM");
        assert!(c.iter().any(|c| c.type_ == STALLED && c.status));
    }

    #[test]
    fn events_only_on_transitions() {
        let bad = policy_conditions(&rejected("not PEM"), PolicyMode::Enforce);
        let first = transition_event(&[], &bad).unwrap();
        assert!(first.warning);
        assert_eq!(first.reason, "PolicyRejectedInvalidKey");
        assert_eq!(transition_event(&written(&bad), &bad), None);

        let other = policy_conditions(&rejected("truncated"), PolicyMode::Enforce);
        assert!(transition_event(&written(&bad), &other).is_some());

        let good = policy_conditions(&Assessment::default(), PolicyMode::Enforce);
        let fixed = transition_event(&written(&bad), &good).unwrap();
        assert!(!fixed.warning);
        assert_eq!(fixed.reason, "PolicyAccepted");
        assert_eq!(transition_event(&written(&good), &good), None);
    }

    #[test]
    fn long_rejections_are_cut_on_a_char_boundary() {
        let a = Assessment {
            problems: (0..100)
                .map(|i| Problem {
                    field: format!("spec.images.deniedRegistries[{i}]"),
                    reason: Reason::InvalidRegistry,
                    message: "ü".repeat(10),
                })
                .collect(),
            ..Assessment::default()
        };
        let m = rejection_message(&a);
        assert!(m.len() <= 1000 + '…'.len_utf8());
        assert!(m.ends_with('…'));
    }
}
