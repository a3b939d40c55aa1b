//! `Classifier`, `Classification`, `UserAgent`, `parse_user_agent` and `CLASSIFIER_HEADERS` for
//! Python.

use std::borrow::Cow;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyMapping, PyString, PyTuple};
use shortcore::classify::{Classifier, Header, Label, OwnedHeaders, Request, RequestHeaders};
use shortcore::edge_event::ClickRecord;

use crate::errors::{invalid_argument, to_py};
use crate::without_gil;

/// The verdict on one request: class, reason, and what the user agent says.
#[pyclass(frozen, module = "shortcore._core", name = "Classification")]
pub struct PyClassification {
    inner: shortcore::Classification,
}

#[pymethods]
impl PyClassification {
    #[getter]
    fn label(&self) -> &'static str {
        self.inner.label().as_str()
    }

    #[getter]
    fn reason(&self) -> &'static str {
        self.inner.reason()
    }

    #[getter]
    fn browser(&self) -> Option<&'static str> {
        self.inner.user_agent().browser()
    }

    #[getter]
    fn browser_version(&self) -> Option<String> {
        self.inner.user_agent().browser_version().map(|v| v.as_str().to_owned())
    }

    #[getter]
    fn os(&self) -> Option<&'static str> {
        self.inner.user_agent().os()
    }

    #[getter]
    fn os_version(&self) -> Option<String> {
        self.inner.user_agent().os_version().map(|v| v.as_str().to_owned())
    }

    #[getter]
    fn device(&self) -> &'static str {
        self.inner.user_agent().device().as_str()
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyClassification>()
            .is_ok_and(|other| other.get().inner == self.inner)
    }

    fn __hash__(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.inner.hash(&mut hasher);
        hasher.finish()
    }

    fn __repr__(&self) -> String {
        let ua = self.inner.user_agent();
        format!(
            "Classification(label='{}', reason='{}', browser={}, os={}, device='{}')",
            self.inner.label().as_str(),
            self.inner.reason(),
            repr(ua.browser()),
            repr(ua.os()),
            ua.device().as_str()
        )
    }
}

/// What a user agent says: browser, OS and device.
#[pyclass(frozen, module = "shortcore._core", name = "UserAgent")]
pub struct PyUserAgent {
    inner: shortcore::UserAgent,
}

#[pymethods]
impl PyUserAgent {
    #[getter]
    fn browser(&self) -> Option<&'static str> {
        self.inner.browser()
    }

    #[getter]
    fn browser_version(&self) -> Option<String> {
        self.inner.browser_version().map(|v| v.as_str().to_owned())
    }

    #[getter]
    fn os(&self) -> Option<&'static str> {
        self.inner.os()
    }

    #[getter]
    fn os_version(&self) -> Option<String> {
        self.inner.os_version().map(|v| v.as_str().to_owned())
    }

    #[getter]
    fn device(&self) -> &'static str {
        self.inner.device().as_str()
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyUserAgent>()
            .is_ok_and(|other| other.get().inner == self.inner)
    }

    fn __repr__(&self) -> String {
        format!(
            "UserAgent(browser={}, browser_version={}, os={}, os_version={}, device='{}')",
            repr(self.inner.browser()),
            repr(self.inner.browser_version().as_ref().map(shortcore::Version::as_str)),
            repr(self.inner.os()),
            repr(self.inner.os_version().as_ref().map(shortcore::Version::as_str)),
            self.inner.device().as_str()
        )
    }
}

/// An optional name as Python writes it. Names come from the compiled-in data, without quotes.
fn repr(value: Option<&str>) -> String {
    value.map_or_else(|| "None".to_owned(), |v| format!("'{v}'"))
}

/// Text from a `str` (lossily when it holds lone surrogates) or `bytes` (as is; the core reads
/// bytes), borrowed when possible.
fn text<'a>(py: Python<'_>, value: &'a Bound<'_, PyAny>, what: &str) -> PyResult<Cow<'a, [u8]>> {
    if let Ok(string) = value.cast::<PyString>() {
        return Ok(match string.to_str() {
            Ok(s) => Cow::Borrowed(s.as_bytes()),
            Err(_) => Cow::Owned(string.to_string_lossy().into_owned().into_bytes()),
        });
    }
    if let Ok(bytes) = value.cast::<PyBytes>() {
        return Ok(Cow::Borrowed(bytes.as_bytes()));
    }
    Err(invalid_argument(
        py,
        format!("{what} must be str, bytes or None, not {}", type_name(value)),
    ))
}

/// Optional text: `None` stays `None`.
fn optional_text<'a>(py: Python<'_>, value: &'a Bound<'_, PyAny>, what: &str) -> PyResult<Option<Cow<'a, [u8]>>> {
    if value.is_none() {
        Ok(None)
    } else {
        text(py, value, what).map(Some)
    }
}

/// The user agent as the core takes it: UTF-8, invalid bytes replaced.
fn user_agent_text(bytes: Cow<'_, [u8]>) -> Cow<'_, str> {
    match bytes {
        Cow::Borrowed(b) => String::from_utf8_lossy(b),
        Cow::Owned(b) => Cow::Owned(String::from_utf8_lossy(&b).into_owned()),
    }
}

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map_or_else(|_| "?".to_owned(), |n| n.to_string())
}

fn seconds(py: Python<'_>, value: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<f64>> {
    match value {
        None => Ok(None),
        Some(v) if v.is_none() => Ok(None),
        Some(v) => v
            .extract::<f64>()
            .map(Some)
            .map_err(|_| invalid_argument(py, format!("{what} must be a number or None, not {}", type_name(v)))),
    }
}

/// Calls `each(name, value)` for every header of a mapping (any key case) or a sequence of
/// `(name, value)` pairs such as ASGI's `scope["headers"]`.
fn for_each_header<'py>(
    py: Python<'py>,
    headers: &Bound<'py, PyAny>,
    mut each: impl FnMut(&[u8], Bound<'py, PyAny>) -> PyResult<()>,
) -> PyResult<()> {
    if headers.is_none() {
        return Ok(());
    }
    let mut pair = |name: &Bound<'py, PyAny>, value: Bound<'py, PyAny>| -> PyResult<()> {
        let name = text(py, name, "a header name")?;
        each(&name, value)
    };
    if let Ok(dict) = headers.cast::<PyDict>() {
        for (name, value) in dict.iter() {
            pair(&name, value)?;
        }
        return Ok(());
    }
    if let Ok(list) = headers.cast::<PyList>() {
        for item in list.iter() {
            let (name, value) = two(py, &item)?;
            pair(&name, value)?;
        }
        return Ok(());
    }
    if let Ok(mapping) = headers.cast::<PyMapping>() {
        for item in mapping.items()?.iter() {
            let (name, value) = two(py, &item)?;
            pair(&name, value)?;
        }
        return Ok(());
    }
    if headers.cast::<PyString>().is_err() && headers.cast::<PyBytes>().is_err() {
        if let Ok(items) = headers.try_iter() {
            for item in items {
                let (name, value) = two(py, &item?)?;
                pair(&name, value)?;
            }
            return Ok(());
        }
    }
    Err(invalid_argument(
        py,
        format!(
            "headers must be a mapping or a sequence of (name, value) pairs, not {}",
            type_name(headers)
        ),
    ))
}

/// The headers the classifier reads, their values still the caller's objects, and the others
/// already counted (they matter only as a number and as client hints).
type SortedHeaders<'py> = (Vec<(Header, Bound<'py, PyAny>)>, RequestHeaders<'static>);

fn sort_headers<'py>(py: Python<'py>, headers: &Bound<'py, PyAny>) -> PyResult<SortedHeaders<'py>> {
    let mut kept = Vec::new();
    let mut counted = RequestHeaders::new();
    for_each_header(py, headers, |name, value| {
        match Header::from_name(name) {
            Some(header) => kept.push((header, value)),
            None => counted.insert(name, &[]),
        }
        Ok(())
    })?;
    Ok((kept, counted))
}

/// The kept headers' values as bytes, borrowed from their objects where possible.
fn header_values<'a>(py: Python<'_>, kept: &'a [(Header, Bound<'_, PyAny>)]) -> PyResult<Vec<Cow<'a, [u8]>>> {
    kept.iter()
        .map(|(_, value)| text(py, value, "a header value"))
        .collect()
}

/// The counted headers with the kept ones' values added.
fn with_values<'a>(
    counted: &RequestHeaders<'static>,
    kept: &[(Header, Bound<'_, PyAny>)],
    values: &'a [Cow<'a, [u8]>],
) -> RequestHeaders<'a> {
    let mut headers: RequestHeaders<'a> = *counted;
    for ((header, _), value) in kept.iter().zip(values) {
        headers.insert(header.name().as_bytes(), value);
    }
    headers
}

/// The two halves of a `(name, value)` pair.
fn two<'py>(py: Python<'py>, item: &Bound<'py, PyAny>) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    if let Ok(tuple) = item.cast::<PyTuple>() {
        if tuple.len() == 2 {
            return Ok((tuple.get_item(0)?, tuple.get_item(1)?));
        }
    } else if let Ok((name, value)) = item.extract::<(Bound<'py, PyAny>, Bound<'py, PyAny>)>() {
        return Ok((name, value));
    }
    Err(invalid_argument(
        py,
        format!("a header must be a (name, value) pair, not {}", item.repr()?),
    ))
}

/// One request of a batch, copied out of its dict so the work can run without the GIL.
struct OwnedRequest {
    user_agent: Option<String>,
    method: String,
    headers: OwnedHeaders,
    seconds_since_send: Option<f64>,
    ip: Option<String>,
}

impl OwnedRequest {
    fn extract(py: Python<'_>, item: &Bound<'_, PyAny>) -> PyResult<Self> {
        let get = |key: &str| -> PyResult<Option<Bound<'_, PyAny>>> {
            if let Ok(dict) = item.cast::<PyDict>() {
                return dict.get_item(key);
            }
            let mapping = item.cast::<PyMapping>().map_err(|_| {
                invalid_argument(py, format!("each request must be a mapping, not {}", type_name(item)))
            })?;
            match mapping.get_item(key) {
                Ok(value) => Ok(Some(value)),
                Err(err) if err.is_instance_of::<pyo3::exceptions::PyKeyError>(py) => Ok(None),
                Err(err) => Err(err),
            }
        };
        let owned_text = |key: &str| -> PyResult<Option<String>> {
            match get(key)? {
                Some(value) => Ok(optional_text(py, &value, key)?.map(|t| user_agent_text(t).into_owned())),
                None => Ok(None),
            }
        };
        let mut headers = OwnedHeaders::new();
        if let Some(value) = get("headers")? {
            for_each_header(py, &value, |name, value| {
                headers.insert(name, &text(py, &value, "a header value")?);
                Ok(())
            })?;
        }
        Ok(Self {
            user_agent: owned_text("ua")?,
            method: owned_text("method")?.unwrap_or_default(),
            headers,
            seconds_since_send: seconds(py, get("seconds_since_send")?.as_ref(), "seconds_since_send")?,
            ip: owned_text("ip")?,
        })
    }

    fn classify(&self, classifier: Classifier) -> shortcore::Classification {
        // No `ua` (or `None`): the User-Agent header speaks, as in the single call.
        let request = Request {
            user_agent: self.user_agent.as_deref(),
            method: &self.method,
            headers: self.headers.borrowed(),
            seconds_since_send: self.seconds_since_send,
            ip: self.ip.as_deref(),
        };
        classifier.classify(&request)
    }
}

/// Classifies requests to short links as human, preview or bot.
#[pyclass(frozen, module = "shortcore._core", name = "Classifier")]
pub struct PyClassifier {
    inner: Classifier,
}

#[pymethods]
impl PyClassifier {
    #[new]
    #[pyo3(signature = (too_soon_seconds = None), text_signature = "(too_soon_seconds=2.0)")]
    fn new(py: Python<'_>, too_soon_seconds: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        // Taken as any object so that a wrong type raises InvalidArgumentError, not TypeError.
        let seconds =
            seconds(py, too_soon_seconds, "too_soon_seconds")?.unwrap_or(Classifier::DEFAULT_TOO_SOON_SECONDS);
        let inner = Classifier::new(seconds).map_err(|e| to_py(py, &e))?;
        Ok(Self { inner })
    }

    #[getter]
    fn too_soon_seconds(&self) -> f64 {
        self.inner.too_soon_seconds()
    }

    #[pyo3(
        signature = (ua, method = None, headers = None, seconds_since_send = None, ip = None),
        text_signature = "($self, ua, method='GET', headers=None, seconds_since_send=None, ip=None)"
    )]
    fn classify(
        &self,
        py: Python<'_>,
        ua: &Bound<'_, PyAny>,
        method: Option<&Bound<'_, PyAny>>,
        headers: Option<&Bound<'_, PyAny>>,
        seconds_since_send: Option<&Bound<'_, PyAny>>,
        ip: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyClassification> {
        let ua_bytes = optional_text(py, ua, "ua")?;
        let ua_text = ua_bytes.map(user_agent_text);
        let method_bytes = match method {
            Some(m) => optional_text(py, m, "method")?,
            None => None,
        };
        let method_text = method_bytes.as_deref().map(String::from_utf8_lossy);
        let ip_bytes = match ip {
            Some(ip) => optional_text(py, ip, "ip")?,
            None => None,
        };
        let ip_text = ip_bytes.as_deref().map(String::from_utf8_lossy);

        let (kept, counted) = match headers {
            Some(headers) => sort_headers(py, headers)?,
            None => (Vec::new(), RequestHeaders::new()),
        };
        let values = header_values(py, &kept)?;
        let request_headers = with_values(&counted, &kept, &values);

        let request = Request {
            user_agent: ua_text.as_deref(),
            method: method_text.as_deref().unwrap_or("GET"),
            headers: request_headers,
            seconds_since_send: seconds(py, seconds_since_send, "seconds_since_send")?,
            ip: ip_text.as_deref(),
        };
        Ok(PyClassification {
            inner: self.inner.classify(&request),
        })
    }

    /// The edge's hot path in one call: classifies the request and writes its event (JSON,
    /// format version 1) from one pass over the ASGI headers. Returns the event and the class.
    #[pyo3(
        signature = (headers, method, outcome, event_id, time_ms, account, campaign_id, domain, token,
                     recipient_index, link_index, ip, click_id, seconds_since_send),
    )]
    #[allow(clippy::too_many_arguments)]
    fn edge_event<'py>(
        &self,
        py: Python<'py>,
        headers: &Bound<'py, PyAny>,
        method: &str,
        outcome: &str,
        event_id: &str,
        time_ms: i64,
        account: &str,
        campaign_id: &str,
        domain: &str,
        token: &[u8],
        recipient_index: i64,
        link_index: i64,
        ip: &str,
        click_id: &str,
        seconds_since_send: Option<f64>,
    ) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyString>)> {
        let (kept, counted) = sort_headers(py, headers)?;
        let values = header_values(py, &kept)?;
        let request_headers = with_values(&counted, &kept, &values);
        let ua = request_headers.get(Header::UserAgent).map(String::from_utf8_lossy);
        let request = Request {
            user_agent: Some(ua.as_deref().unwrap_or("")),
            method,
            headers: request_headers,
            seconds_since_send,
            ip: (!ip.is_empty()).then_some(ip),
        };
        let verdict = self.inner.classify(&request);
        let record = ClickRecord {
            event_id,
            time_ms,
            outcome,
            account,
            campaign_id,
            domain,
            token,
            recipient_index,
            link_index,
            method,
            ip,
            click_id,
        };
        let mut out = Vec::with_capacity(512);
        record.write_json(&verdict, &request_headers, &mut out);
        let label = match verdict.label() {
            Label::Human => intern!(py, "human"),
            Label::Preview => intern!(py, "preview"),
            Label::Bot => intern!(py, "bot"),
        };
        Ok((PyBytes::new(py, &out), label.clone()))
    }

    fn classify_many<'py>(&self, py: Python<'py>, requests: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
        let owned = if let Ok(list) = requests.cast::<PyList>() {
            list.iter()
                .map(|item| OwnedRequest::extract(py, &item))
                .collect::<PyResult<Vec<_>>>()?
        } else if requests.cast::<PyString>().is_err() && requests.cast::<PyDict>().is_err() {
            let items = requests.try_iter().map_err(|_| {
                invalid_argument(
                    py,
                    format!("requests must be a sequence of mappings, not {}", type_name(requests)),
                )
            })?;
            items
                .map(|item| OwnedRequest::extract(py, &item?))
                .collect::<PyResult<Vec<_>>>()?
        } else {
            return Err(invalid_argument(
                py,
                format!("requests must be a sequence of mappings, not {}", type_name(requests)),
            ));
        };
        let classifier = self.inner;
        let results = without_gil(py, || owned.iter().map(|r| r.classify(classifier)).collect::<Vec<_>>());
        let list = PyList::empty(py);
        for inner in results {
            list.append(Bound::new(py, PyClassification { inner })?)?;
        }
        Ok(list)
    }

    fn __repr__(&self) -> String {
        format!("Classifier(too_soon_seconds={})", self.inner.too_soon_seconds())
    }
}

/// Parses a user agent into browser, OS and device.
#[pyfunction]
fn parse_user_agent(py: Python<'_>, ua: &Bound<'_, PyAny>) -> PyResult<PyUserAgent> {
    let text = optional_text(py, ua, "ua")?.map(user_agent_text).unwrap_or_default();
    Ok(PyUserAgent {
        inner: shortcore::parse_user_agent(&text),
    })
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyClassifier>()?;
    m.add_class::<PyClassification>()?;
    m.add_class::<PyUserAgent>()?;
    m.add_function(wrap_pyfunction!(parse_user_agent, m)?)?;
    m.add(
        "CLASSIFIER_HEADERS",
        PyTuple::new(m.py(), shortcore::CLASSIFIER_HEADERS)?,
    )?;
    Ok(())
}
