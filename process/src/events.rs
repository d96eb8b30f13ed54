//! Kubernetes Events (events.k8s.io/v1) about the objects Zastava reconciles and observes.
//!
//! kube-runtime's `Recorder` files Events about cluster-scoped objects under `default`, which
//! Kubernetes before 1.22 rejects ("involvedObject.namespace: does not match event.namespace"):
//! new-style Events about cluster-scoped objects must live in `kube-system` there, and
//! `kube-system` is accepted by every version since.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};

/// Where an Event about `regarding` is filed.
pub fn event_namespace(regarding: &ObjectReference) -> &str {
    regarding
        .namespace
        .as_deref()
        .filter(|ns| !ns.is_empty())
        .unwrap_or("kube-system")
}

/// Files Events as one reporting controller (the component) and instance (the replica or
/// node).
#[derive(Clone)]
pub struct EventPublisher {
    client: Client,
    controller: String,
    instance: String,
}

impl EventPublisher {
    pub fn new(client: Client, controller: &str, instance: String) -> Self {
        Self {
            client,
            controller: controller.to_string(),
            instance,
        }
    }

    pub async fn publish(
        &self,
        regarding: ObjectReference,
        warning: bool,
        reason: &str,
        action: &str,
        note: &str,
    ) -> Result<(), kube::Error> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), event_namespace(&regarding));
        let now = k8s_openapi::jiff::Timestamp::now();
        let event = Event {
            metadata: ObjectMeta {
                // As client-go names them; `generateName: "<name>."` is invalid before 1.22.
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or("object"),
                    now.as_nanosecond()
                )),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some(if warning { "Warning" } else { "Normal" }.to_string()),
            reason: Some(reason.to_string()),
            action: Some(action.to_string()),
            note: Some(truncate(note, MAX_NOTE_BYTES)),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            regarding: Some(regarding),
            ..Default::default()
        };
        api.create(&PostParams::default(), &event).await.map(|_| ())
    }
}

/// The API caps an Event's note at 1 kB.
pub const MAX_NOTE_BYTES: usize = 1024;

/// `text` cut to at most `limit` bytes on a character boundary, marked with `…` when cut.
pub fn truncate(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let mut cut = limit - '…'.len_utf8();
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &text[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_scoped_objects_file_events_in_kube_system() {
        let cluster_scoped = ObjectReference {
            name: Some("baseline".into()),
            ..Default::default()
        };
        assert_eq!(event_namespace(&cluster_scoped), "kube-system");
        let namespaced = ObjectReference {
            name: Some("web".into()),
            namespace: Some("team-a".into()),
            ..Default::default()
        };
        assert_eq!(event_namespace(&namespaced), "team-a");
    }

    #[test]
    fn notes_are_capped_on_a_char_boundary() {
        let note = truncate(&"é".repeat(1000), 1024);
        assert!(note.len() <= 1024);
        assert!(note.ends_with('…'));
        assert_eq!(truncate("short", 1024), "short");
    }
}
