//! Comparing two exchanges field by field: the request line, headers and decoded form fields
//! side by side, each row marked when the two differ.

use std::collections::HashMap;

use crate::exchange::Exchange;

/// One compared field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiffRow {
    pub section: &'static str,
    pub name: String,
    pub left: Option<String>,
    pub right: Option<String>,
}

impl DiffRow {
    pub fn differs(&self) -> bool {
        self.left != self.right
    }
}

/// Pairs `(name, value)` lists by name, in the order of first appearance on either side;
/// a repeated name is paired occurrence by occurrence. Linear in the pairs: a form of many
/// thousand fields is compared on every frame of the diff view.
fn pair(
    section: &'static str,
    left: &[(String, String)],
    right: &[(String, String)],
) -> Vec<DiffRow> {
    /// One name: as first written, and its values on either side.
    struct Named<'a> {
        display: &'a str,
        values: [Vec<&'a str>; 2],
    }
    let mut order: Vec<Named> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (side, list) in [left, right].into_iter().enumerate() {
        for (name, value) in list {
            let at = *index.entry(name.to_ascii_lowercase()).or_insert_with(|| {
                order.push(Named {
                    display: name,
                    values: [Vec::new(), Vec::new()],
                });
                order.len() - 1
            });
            order[at].values[side].push(value);
        }
    }
    let mut rows = Vec::new();
    for Named { display, values } in order {
        let [l, r] = values;
        for i in 0..l.len().max(r.len()) {
            rows.push(DiffRow {
                section,
                name: display.to_string(),
                left: l.get(i).map(|v| v.to_string()),
                right: r.get(i).map(|v| v.to_string()),
            });
        }
    }
    rows
}

/// Every compared row of `a` against `b`.
pub fn diff_rows(a: &Exchange, b: &Exchange) -> Vec<DiffRow> {
    let line = |e: &Exchange| {
        vec![
            ("method".to_string(), e.request.method.clone()),
            ("target".to_string(), e.request.target.clone()),
            (
                "signature".to_string(),
                e.verdict.status.as_str().to_string(),
            ),
        ]
    };
    let answer = |e: &Exchange| {
        let mut pairs = vec![(
            "status".to_string(),
            e.status().map_or("-".into(), |s| s.to_string()),
        )];
        if let Some(response) = &e.response {
            pairs.extend(response.headers.shown_pairs());
        }
        pairs
    };
    let mut rows = pair("request", &line(a), &line(b));
    rows.extend(pair(
        "headers",
        &a.request.headers.shown_pairs(),
        &b.request.headers.shown_pairs(),
    ));
    rows.extend(pair("form", &a.form_fields(), &b.form_fields()));
    rows.extend(pair("response", &answer(a), &answer(b)));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::{Headers, RequestRecord};
    use bytes::Bytes;

    fn exchange(body: &'static str, extra: Option<(&str, &str)>) -> Exchange {
        let mut headers = vec![(
            "content-type".to_string(),
            b"application/x-www-form-urlencoded".to_vec(),
        )];
        if let Some((n, v)) = extra {
            headers.push((n.into(), v.as_bytes().to_vec()));
        }
        let request = RequestRecord {
            method: "POST".into(),
            target: "/cb".into(),
            headers: Headers(headers),
            body: Bytes::from_static(body.as_bytes()),
            ..RequestRecord::default()
        };
        let verdict = crate::signature::verify(
            &crate::signature::CallbackRequest {
                method: "POST",
                url: "https://h/cb",
                headers: &[],
                body: b"",
                extra_ports: &[],
                other_urls: &[],
            },
            &Default::default(),
        );
        Exchange::received(request, verdict, 0)
    }

    #[test]
    fn differing_fields_and_headers_on_one_side_only_are_marked() {
        let a = exchange("Event=Ring&CallUUID=1", None);
        let b = exchange("Event=Hangup&CallUUID=1&Duration=5", Some(("X-New", "1")));
        let rows = diff_rows(&a, &b);
        let find = |section: &str, name: &str| {
            rows.iter()
                .find(|r| r.section == section && r.name == name)
                .unwrap_or_else(|| panic!("{section} {name}"))
        };
        assert!(!find("request", "method").differs());
        assert!(!find("form", "CallUUID").differs());
        assert!(find("form", "Event").differs());
        let duration = find("form", "Duration");
        assert_eq!(
            (duration.left.as_deref(), duration.right.as_deref()),
            (None, Some("5"))
        );
        assert!(find("headers", "X-New").differs());
        assert!(!find("headers", "content-type").differs());
        // The answer is its own section, after the request's.
        assert_eq!(rows.last().unwrap().section, "response");
        assert!(!find("response", "status").differs());
        assert!(rows
            .iter()
            .all(|r| r.section != "request" || r.name != "status"));
    }

    #[test]
    fn names_pair_ignoring_case_in_order_of_first_appearance_and_repeat_by_occurrence() {
        let list = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect()
        };
        let left = list(&[("B", "1"), ("a", "2"), ("b", "3")]);
        let right = list(&[("A", "2"), ("c", "4"), ("b", "1")]);
        let rows: Vec<_> = pair("form", &left, &right)
            .into_iter()
            .map(|r| (r.name, r.left, r.right))
            .collect();
        let some = |v: &str| Some(v.to_string());
        assert_eq!(
            rows,
            [
                ("B".into(), some("1"), some("1")),
                ("B".into(), some("3"), None),
                ("a".into(), some("2"), some("2")),
                ("c".into(), None, some("4")),
            ]
        );
    }
}
