//! Who a session is and what it may do: tokens (issue, verify, revoke, refresh, SCRAM
//! verifiers), actions and resource globs. No network and no SQL here: the server asks
//! [`TokenStore`] to authenticate and [`Principal::allows`] to authorize.

mod token;

pub use token::{
    parse_ttl, IssuedToken, ScramVerifier, TokenError, TokenRecord, TokenSpec, TokenStore,
    TOKEN_PREFIX,
};

/// Everything a token can be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Read aggregates, events and verification results.
    AggregateRead,
    /// Append events to an existing aggregate.
    AggregateAppend,
    /// Append the first event of a new aggregate.
    AggregateCreate,
    /// Read the outbox.
    OutboxRead,
    /// Read the applied schema.
    SchemaRead,
    /// Apply a schema.
    SchemaWrite,
    /// Issue, list, revoke and refresh tokens.
    TokenManage,
}

impl Action {
    pub const ALL: [Action; 7] = [
        Action::AggregateRead,
        Action::AggregateAppend,
        Action::AggregateCreate,
        Action::OutboxRead,
        Action::SchemaRead,
        Action::SchemaWrite,
        Action::TokenManage,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Action::AggregateRead => "aggregate.read",
            Action::AggregateAppend => "aggregate.append",
            Action::AggregateCreate => "aggregate.create",
            Action::OutboxRead => "outbox.read",
            Action::SchemaRead => "schema.read",
            Action::SchemaWrite => "schema.write",
            Action::TokenManage => "token.manage",
        }
    }

    /// Parses an action name; `*` and `area.*` are handled by [`expand_actions`].
    pub fn parse(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

/// Expands action names (`*`, `aggregate.*`, exact names) into actions, or names the bad one.
pub fn expand_actions(names: &[String]) -> Result<Vec<Action>, String> {
    let mut actions = Vec::new();
    for name in names {
        let matched: Vec<Action> = if name == "*" {
            Action::ALL.to_vec()
        } else if let Some(area) = name.strip_suffix(".*") {
            Action::ALL
                .into_iter()
                .filter(|a| a.as_str().split('.').next() == Some(area))
                .collect()
        } else {
            Action::parse(name).into_iter().collect()
        };
        if matched.is_empty() {
            let known: Vec<&str> = Action::ALL.iter().map(Action::as_str).collect();
            return Err(format!(
                "unknown action {name:?}; known actions: {}, or * / <area>.*",
                known.join(", ")
            ));
        }
        actions.extend(matched);
    }
    actions.sort();
    actions.dedup();
    Ok(actions)
}

/// An authenticated session's identity and grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub token_id: String,
    pub group: String,
    pub user: String,
    pub actions: Vec<Action>,
    /// Resource globs such as `*`, `aggregate:order:*`, `aggregate:order:order-42`.
    pub resources: Vec<String>,
}

impl Principal {
    /// Whether this principal may perform `action` (on the aggregate, when one is named).
    pub fn allows(&self, action: Action, aggregate: Option<(&str, &str)>) -> bool {
        self.allows_stored(
            action,
            aggregate.map(|(ty, id)| (ty.as_bytes(), id.as_bytes())),
        )
    }

    /// [`Self::allows`] for an aggregate named by the bytes a stored event holds: resource
    /// globs match bytes, so a scan authorizes each row without first checking its names as
    /// UTF-8.
    pub fn allows_stored(&self, action: Action, aggregate: Option<(&[u8], &[u8])>) -> bool {
        if !self.actions.contains(&action) {
            return false;
        }
        match aggregate {
            None => true,
            // The common grant covers everything: answer it without building the resource
            // name, since listings and outbox pages ask once per row.
            Some(_) if self.resources.iter().any(|glob| glob == "*") => true,
            Some((ty, id)) => {
                let mut resource =
                    Vec::with_capacity(RESOURCE_PREFIX.len() + ty.len() + 1 + id.len());
                resource.extend_from_slice(RESOURCE_PREFIX.as_bytes());
                resource.extend_from_slice(ty);
                resource.push(b':');
                resource.extend_from_slice(id);
                self.resources
                    .iter()
                    .any(|glob| glob_matches_bytes(glob.as_bytes(), &resource))
            }
        }
    }

    /// Whether every aggregate of `aggregate_type` is within this principal's resources.
    pub fn covers_type(&self, aggregate_type: &str) -> bool {
        let probe = format!("{RESOURCE_PREFIX}{aggregate_type}:*");
        self.resources
            .iter()
            .any(|glob| glob == "*" || glob_matches(glob, &probe) && glob.ends_with('*'))
    }
}

/// What an aggregate's resource name starts with: `aggregate:<type>:<id>`.
const RESOURCE_PREFIX: &str = "aggregate:";

/// `*` matches any run of characters (including none); everything else matches itself.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    glob_matches_bytes(pattern.as_bytes(), text.as_bytes())
}

/// [`glob_matches`] on bytes: `*` matches any run of bytes.
fn glob_matches_bytes(p: &[u8], t: &[u8]) -> bool {
    let (mut pi, mut ti) = (0usize, 0usize);
    let (mut star, mut star_t) = (None::<usize>, 0usize);
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            star_t = ti;
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            star_t += 1;
            ti = star_t;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(actions: &[Action], resources: &[&str]) -> Principal {
        Principal {
            token_id: "t".into(),
            group: "ops".into(),
            user: "alice".into(),
            actions: actions.to_vec(),
            resources: resources.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    #[test]
    fn globs() {
        assert!(glob_matches("*", "aggregate:order:o-1"));
        assert!(glob_matches("aggregate:order:*", "aggregate:order:o-1"));
        assert!(!glob_matches(
            "aggregate:order:*",
            "aggregate:order_line:o-1"
        ));
        assert!(glob_matches("aggregate:*:vip-*", "aggregate:person:vip-7"));
        assert!(!glob_matches("aggregate:*:vip-*", "aggregate:person:vop-7"));
        assert!(glob_matches("aggregate:order:o-1", "aggregate:order:o-1"));
        assert!(!glob_matches("aggregate:order:o-1", "aggregate:order:o-10"));
    }

    #[test]
    fn actions_expand_and_unknown_ones_are_named() {
        let all = expand_actions(&["*".into()]).expect("all");
        assert_eq!(all.len(), Action::ALL.len());
        let aggregate = expand_actions(&["aggregate.*".into()]).expect("area");
        assert_eq!(
            aggregate,
            vec![
                Action::AggregateRead,
                Action::AggregateAppend,
                Action::AggregateCreate
            ]
        );
        let err = expand_actions(&["aggregate.delete".into()]).expect_err("unknown");
        assert!(err.contains("aggregate.delete") && err.contains("aggregate.read"));
    }

    #[test]
    fn principals_check_actions_and_resources() {
        let p = principal(&[Action::AggregateRead], &["aggregate:order:*"]);
        assert!(p.allows(Action::AggregateRead, Some(("order", "o-1"))));
        assert!(!p.allows(Action::AggregateRead, Some(("person", "p"))));
        assert!(!p.allows(Action::AggregateAppend, Some(("order", "o-1"))));
        assert!(p.covers_type("order"));
        assert!(!p.covers_type("person"));
    }

    /// Scans authorize each row on the names' stored bytes; that must be the same answer as
    /// on the names as text, for every kind of grant.
    #[test]
    fn stored_names_are_authorized_as_their_text_is() {
        let grants = [
            vec!["*"],
            vec!["aggregate:order:*"],
            vec!["aggregate:*:vip-*"],
            vec!["aggregate:order:o-1", "aggregate:person:*"],
            vec![],
        ];
        let names = [
            ("order", "o-1"),
            ("order", "o-10"),
            ("order_line", "o-1"),
            ("person", "vip-7"),
            ("person", "p"),
            ("", ""),
        ];
        for resources in grants {
            let p = principal(&[Action::OutboxRead], &resources);
            for (ty, id) in names {
                for action in [Action::OutboxRead, Action::AggregateRead] {
                    assert_eq!(
                        p.allows_stored(action, Some((ty.as_bytes(), id.as_bytes()))),
                        p.allows(action, Some((ty, id))),
                        "{resources:?} {action:?} {ty}:{id}"
                    );
                }
            }
        }
        // Bytes that are not text still match a glob byte for byte.
        let p = principal(&[Action::OutboxRead], &["aggregate:order:*"]);
        assert!(p.allows_stored(Action::OutboxRead, Some((b"order", b"\xFF"))));
        assert!(!p.allows_stored(Action::OutboxRead, Some((b"\xFFrder", b"o-1"))));
    }
}
