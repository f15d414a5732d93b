//! Reading the Vobiz XML a server answers (spec §5): well-formed, exactly one `<Response>`
//! root, parsed into a small element tree the call simulation walks.

use quick_xml::events::Event;
use quick_xml::Reader;

/// One XML element: name, attributes in document order, text and child elements.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Element {
    /// The element name, e.g. `Gather`.
    pub name: String,
    /// Attributes, unescaped.
    pub attrs: Vec<(String, String)>,
    /// Concatenated text content (trimmed), unescaped.
    pub text: String,
    /// Child elements in order.
    pub children: Vec<Element>,
}

impl Element {
    /// The value of attribute `name`, if present.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of attribute `name` if present and not blank.
    pub fn url_attr(&self, name: &str) -> Option<&str> {
        self.attr(name).map(str::trim).filter(|v| !v.is_empty())
    }

    /// The `method`-like attribute `name`, upper-cased; POST when absent (Vobiz's default).
    pub fn method(&self, name: &str) -> String {
        self.url_attr(name).unwrap_or("POST").to_ascii_uppercase()
    }

    /// A boolean attribute (`true`/`false`, any case), or `default` when absent.
    pub fn flag(&self, name: &str, default: bool) -> bool {
        match self.attr(name) {
            Some(v) => v.trim().eq_ignore_ascii_case("true"),
            None => default,
        }
    }
}

/// Parses `body` as Vobiz XML: well-formed, a single `<Response>` root (an empty body is not
/// XML). Returns the root; the error says what is wrong and where.
pub fn parse(body: &str) -> Result<Element, String> {
    let mut reader = Reader::from_str(body);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let position = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|e| format!("not well-formed XML at byte {position}: {e}"))?;
        match event {
            Event::Start(start) | Event::Empty(start) if root.is_some() && stack.is_empty() => {
                let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
                return Err(format!(
                    "a second root element <{name}> after </Response>: there must be exactly one"
                ));
            }
            Event::Start(start) => stack.push(element(&start)?),
            Event::Empty(start) => {
                let el = element(&start)?;
                close(el, &mut stack, &mut root)?;
            }
            Event::End(_) => {
                // quick-xml has already checked that the end tag matches the open one.
                if let Some(el) = stack.pop() {
                    close(el, &mut stack, &mut root)?;
                }
            }
            Event::Text(text) => {
                let text = text.xml_content().map_err(|e| format!("bad text: {e}"))?;
                push_text(&mut stack, &text)?;
            }
            Event::CData(data) => {
                let text = String::from_utf8_lossy(&data).into_owned();
                push_text(&mut stack, &text)?;
            }
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref().map_err(|e| e.to_string())? {
                    Some(c) => c.to_string(),
                    None => {
                        let name = reference.xml_content().map_err(|e| e.to_string())?;
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| format!("unknown entity &{name};"))?
                            .to_owned()
                    }
                };
                push_text(&mut stack, &resolved)?;
            }
            Event::Eof => break,
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if let Some(open) = stack.last() {
        return Err(format!(
            "not well-formed XML: <{}> is never closed",
            open.name
        ));
    }
    let root = root.ok_or("no XML element: expected <Response>…</Response>")?;
    if root.name != "Response" {
        return Err(format!(
            "the root element is <{}>, Vobiz expects <Response>",
            root.name
        ));
    }
    Ok(root)
}

fn element(start: &quick_xml::events::BytesStart<'_>) -> Result<Element, String> {
    let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
    let mut attrs = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(|e| format!("bad attribute in <{name}>: {e}"))?;
        let key = String::from_utf8_lossy(attr.key.as_ref()).into_owned();
        let value = attr
            .unescape_value()
            .map_err(|e| format!("bad value of {key} in <{name}>: {e}"))?
            .into_owned();
        attrs.push((key, value));
    }
    Ok(Element {
        name,
        attrs,
        ..Element::default()
    })
}

fn close(mut el: Element, stack: &mut [Element], root: &mut Option<Element>) -> Result<(), String> {
    el.text = el.text.trim().to_owned();
    match stack.last_mut() {
        Some(parent) => parent.children.push(el),
        None => *root = Some(el),
    }
    Ok(())
}

fn push_text(stack: &mut [Element], text: &str) -> Result<(), String> {
    match stack.last_mut() {
        Some(el) => {
            el.text.push_str(text);
            Ok(())
        }
        None if text.trim().is_empty() => Ok(()),
        None => Err(format!("text {:?} outside <Response>", text.trim())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_tree() {
        let root = parse(
            "<?xml version=\"1.0\"?>\n<Response><Speak voice=\"WOMAN\">Hi &amp; bye&#33;</Speak>\
             <Gather action=\"/g\"><Play>u</Play></Gather><Hangup/></Response>",
        )
        .unwrap();
        assert_eq!(root.children.len(), 3);
        assert_eq!(root.children[0].text, "Hi & bye!");
        assert_eq!(root.children[0].attr("voice"), Some("WOMAN"));
        assert_eq!(root.children[1].children[0].name, "Play");
        assert_eq!(root.children[1].method("method"), "POST");
        assert!(parse("<Response/>").unwrap().children.is_empty());
    }

    #[test]
    fn rejects_what_vobiz_rejects() {
        for (body, want) in [
            ("", "no XML element"),
            ("<Response><Speak>x</Response>", "not well-formed"),
            ("<Response><Speak>x</Speak>", "never closed"),
            ("<Reply/>", "root element is <Reply>"),
            ("<Response/><Response/>", "second root"),
            ("hello", "outside"),
        ] {
            let err = parse(body).unwrap_err();
            assert!(err.contains(want), "{body:?}: {err}");
        }
    }
}
