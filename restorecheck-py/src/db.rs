//! The `db` object a callable assertion gets: queries on the restored database (tokio-postgres
//! on the shared runtime, run while detached from the GIL) and facts about the restore.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, Utc};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyFloat, PyInt, PyList, PyString, PyTuple};
use restorecheck_core::target::Connection;
use restorecheck_core::{AssertionContext, Error};
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, Kind, ToSql, Type};
use tokio_postgres::{Client, Statement};

use crate::to_py_err;
use crate::values::type_name;

type BoxError = Box<dyn std::error::Error + Sync + Send>;

/// SQLSTATEs that mean the restored data is missing or damaged (as for the `sql` assertion):
/// an assertion hitting one *fails* instead of erroring.
pub fn is_data_problem(code: &str) -> bool {
    restorecheck_core::assertions::sql::is_data_problem(&tokio_postgres::error::SqlState::from_code(code))
}

/// The restored database, as a callable assertion sees it.
#[pyclass(module = "restorecheck._native", name = "Db", frozen)]
pub struct Db {
    handle: tokio::runtime::Handle,
    /// The assertion's context: its sessions are the user's (normal search_path, the check's role).
    ctx: AssertionContext,
    connection: Connection,
    database: String,
    client: Mutex<Option<Arc<Client>>>,
    closed: std::sync::atomic::AtomicBool,
    backup_id: String,
    backup_taken_at: Option<DateTime<Utc>>,
    recovery_end_lsn: Option<String>,
    recovery_end_time: Option<DateTime<Utc>>,
    pg_version: Option<String>,
    timeline: Option<u32>,
}

impl Db {
    /// A db for the check's database; connects on first use.
    pub fn new(handle: tokio::runtime::Handle, ctx: &AssertionContext) -> Self {
        Db {
            handle,
            ctx: ctx.clone(),
            connection: ctx.connection.clone(),
            database: ctx.database.clone(),
            client: Mutex::new(None),
            closed: false.into(),
            backup_id: ctx.backup.id.clone(),
            backup_taken_at: ctx.backup.taken_at,
            recovery_end_lsn: ctx.recovery.end_lsn.map(|l| l.to_string()),
            recovery_end_time: ctx.recovery.last_replayed_at,
            pg_version: ctx.recovery.server_version.clone(),
            timeline: ctx.recovery.timeline,
        }
    }

    /// Drops the connection; later queries raise (the server is torn down after the check).
    pub fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        self.client.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    fn client(&self, py: Python<'_>) -> PyResult<Arc<Client>> {
        if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(crate::RestoreCheckError::new_err(
                "the restored database is gone: use db only while the assertion runs",
            ));
        }
        if let Some(c) = self.client.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            return Ok(c.clone());
        }
        // Connect without holding the lock (another Python thread may want it meanwhile).
        let client =
            py.detach(|| self.handle.block_on(self.ctx.connect(Some(&self.database)))).map_err(|e| to_py_err(&e))?;
        let mut slot = self.client.lock().unwrap_or_else(|p| p.into_inner());
        Ok(slot.get_or_insert_with(|| Arc::new(client)).clone())
    }

    /// Runs `sql` with `params`; rows of decoded cells.
    fn rows(&self, py: Python<'_>, sql: &str, params: &Bound<'_, PyTuple>) -> PyResult<Vec<Vec<Cell>>> {
        let client = self.client(py)?;
        let stmt = py
            .detach(|| self.handle.block_on(client.prepare(sql)))
            .map_err(|e| query_err(format!("preparing {}", short(sql)), e))?;
        if stmt.params().len() != params.len() {
            return Err(PyTypeError::new_err(format!(
                "the query has {} parameters ($1…) but {} values were given",
                stmt.params().len(),
                params.len()
            )));
        }
        let mut values = Vec::with_capacity(params.len());
        for (i, (v, ty)) in params.iter().zip(stmt.params()).enumerate() {
            values.push(match to_param(&v, ty, i + 1)? {
                Conv::Ready(p) => p,
                Conv::ViaText(text) => py
                    .detach(|| self.handle.block_on(from_text(&client, &text, ty)))
                    .map_err(|e| query_err(format!("parameter ${} ({}) = {text:?}", i + 1, ty.name()), e))?,
            });
        }
        py.detach(|| self.handle.block_on(fetch(&client, &stmt, &values)))
            .map_err(|e| query_err(format!("the query {}", short(sql)), e))
    }
}

fn short(sql: &str) -> String {
    let s: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > 80 {
        format!("{:?}", format!("{}…", s.chars().take(79).collect::<String>()))
    } else {
        format!("{s:?}")
    }
}

fn query_err(context: String, e: tokio_postgres::Error) -> PyErr {
    to_py_err(&Error::postgres(context, e))
}

#[pymethods]
impl Db {
    /// Runs `sql` (`$1`, `$2`, … for `params`) and returns the rows as tuples.
    #[pyo3(signature = (sql, *params))]
    fn query<'py>(&self, py: Python<'py>, sql: &str, params: &Bound<'py, PyTuple>) -> PyResult<Bound<'py, PyList>> {
        let rows = self.rows(py, sql, params)?;
        let conv = Converter::new(py)?;
        let out = PyList::empty(py);
        for row in rows {
            let items = row.into_iter().map(|c| conv.to_py(c)).collect::<PyResult<Vec<_>>>()?;
            out.append(PyTuple::new(py, items)?)?;
        }
        Ok(out)
    }

    /// The first column of the first row (None when there are no rows).
    #[pyo3(signature = (sql, *params))]
    fn scalar<'py>(&self, py: Python<'py>, sql: &str, params: &Bound<'py, PyTuple>) -> PyResult<Bound<'py, PyAny>> {
        let rows = self.rows(py, sql, params)?;
        let conv = Converter::new(py)?;
        match rows.into_iter().next().and_then(|r| r.into_iter().next()) {
            Some(c) => conv.to_py(c),
            None => Ok(py.None().into_bound(py)),
        }
    }

    /// The database queries run in (the check's `database`).
    #[getter]
    fn database(&self) -> &str {
        &self.database
    }

    /// Id of the restored backup within its source.
    #[getter]
    fn backup_id(&self) -> &str {
        &self.backup_id
    }

    /// When the restored backup was taken, if the source knows.
    #[getter]
    fn backup_taken_at(&self) -> Option<DateTime<Utc>> {
        self.backup_taken_at
    }

    /// The last WAL position recovery replayed (`"0/3000100"`), if known.
    #[getter]
    fn recovery_end_lsn(&self) -> Option<&str> {
        self.recovery_end_lsn.as_deref()
    }

    /// Commit time of the last transaction recovery replayed, if known.
    #[getter]
    fn recovery_end_time(&self) -> Option<DateTime<Utc>> {
        self.recovery_end_time
    }

    /// `server_version` of the restored server (`"15.18 (Debian …)"`).
    #[getter]
    fn pg_version(&self) -> Option<&str> {
        self.pg_version.as_deref()
    }

    /// Timeline the restored server runs on.
    #[getter]
    fn timeline(&self) -> Option<u32> {
        self.timeline
    }

    /// A libpq connection string for the restored server (for psycopg and friends). It connects
    /// as the superuser: the check's `role` is not applied (run `SET ROLE` yourself).
    #[getter]
    fn dsn(&self) -> String {
        let mut dsn = format!(
            "host={} port={} user={} dbname={}",
            self.connection.host, self.connection.port, self.connection.user, self.database
        );
        // The copy only admits restorecheck's role with the run's password (hex, no quoting needed).
        if let Some(p) = &self.connection.password {
            dsn.push_str(&format!(" password='{}'", p.expose().replace('\\', "\\\\").replace('\'', "\\'")));
        }
        dsn
    }

    fn __repr__(&self) -> String {
        format!("<restorecheck db {:?} of backup {:?}>", self.database, self.backup_id)
    }
}

// ---------------------------------------------------------------------------------------------
// Results: PostgreSQL values → Python

/// A decoded result value (no GIL needed to produce it).
#[derive(Debug)]
enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Numeric(String),
    Text(String),
    Tz(DateTime<Utc>),
    Ts(NaiveDateTime),
    Date(NaiveDate),
    Json(String),
    /// A type without a native conversion: its raw binary value, turned into its PostgreSQL
    /// text form by [`fetch`] before it reaches Python.
    Other(Type, Vec<u8>),
}

fn python_year(y: i32) -> bool {
    (1..=9999).contains(&y)
}

fn decode(ty: &Type, raw: &[u8]) -> Result<Cell, BoxError> {
    Ok(match *ty {
        Type::BOOL => Cell::Bool(bool::from_sql(ty, raw)?),
        Type::INT2 => Cell::Int(i16::from_sql(ty, raw)?.into()),
        Type::INT4 => Cell::Int(i32::from_sql(ty, raw)?.into()),
        Type::INT8 => Cell::Int(i64::from_sql(ty, raw)?),
        Type::OID => Cell::Int(u32::from_sql(ty, raw)?.into()),
        Type::FLOAT4 => Cell::Float(f32::from_sql(ty, raw)?.into()),
        Type::FLOAT8 => Cell::Float(f64::from_sql(ty, raw)?),
        Type::NUMERIC => Cell::Numeric(numeric_text(raw).ok_or("bad numeric")?),
        Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR | Type::UNKNOWN => {
            Cell::Text(String::from_utf8(raw.to_vec())?)
        }
        Type::TIMESTAMPTZ => {
            let v = DateTime::<Utc>::from_sql(ty, raw)?;
            if !python_year(v.year()) {
                return Err("out of Python's range".into());
            }
            Cell::Tz(v)
        }
        Type::TIMESTAMP => {
            let v = NaiveDateTime::from_sql(ty, raw)?;
            if !python_year(v.year()) {
                return Err("out of Python's range".into());
            }
            Cell::Ts(v)
        }
        Type::DATE => {
            let v = NaiveDate::from_sql(ty, raw)?;
            if !python_year(v.year()) {
                return Err("out of Python's range".into());
            }
            Cell::Date(v)
        }
        Type::JSON => Cell::Json(String::from_utf8(raw.to_vec())?),
        Type::JSONB => match raw.split_first() {
            Some((1, rest)) => Cell::Json(String::from_utf8(rest.to_vec())?),
            _ => return Err("unknown jsonb version".into()),
        },
        Type::UUID => Cell::Text(uuid_text(raw).ok_or("bad uuid")?),
        _ => match ty.kind() {
            Kind::Enum(_) => Cell::Text(String::from_utf8(raw.to_vec())?),
            Kind::Domain(inner) => decode(inner, raw)?,
            _ => return Err("no native conversion".into()),
        },
    })
}

impl<'a> FromSql<'a> for Cell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(decode(ty, raw).unwrap_or_else(|_| Cell::Other(ty.clone(), raw.to_vec())))
    }
    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(Cell::Null)
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

/// The raw binary value of any type.
struct Raw(Option<Vec<u8>>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(Raw(Some(raw.to_vec())))
    }
    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(Raw(None))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

fn uuid_text(raw: &[u8]) -> Option<String> {
    if raw.len() != 16 {
        return None;
    }
    let mut s = String::with_capacity(36);
    for (i, b) in raw.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        let _ = write!(s, "{b:02x}");
    }
    Some(s)
}

/// PostgreSQL's binary `numeric` as its exact decimal text (`-12.3400`, `NaN`, `Infinity`).
fn numeric_text(raw: &[u8]) -> Option<String> {
    let word = |i: usize| raw.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let ndigits = usize::from(word(0)?);
    let weight = i32::from(word(2)? as i16);
    let sign = word(4)?;
    let dscale = usize::from(word(6)?);
    if raw.len() != 8 + 2 * ndigits {
        return None;
    }
    let digits: Vec<u16> = (0..ndigits).map(|i| word(8 + 2 * i)).collect::<Option<_>>()?;
    let digit = |i: i32| if i < 0 { 0 } else { digits.get(i as usize).copied().unwrap_or(0) };
    let mut s = String::new();
    match sign {
        0xC000 => return Some("NaN".into()),
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        0x4000 => s.push('-'),
        0x0000 => {}
        _ => return None,
    }
    if weight < 0 {
        s.push('0');
    } else {
        for i in 0..=weight {
            let _ = if i == 0 { write!(s, "{}", digit(i)) } else { write!(s, "{:04}", digit(i)) };
        }
    }
    if dscale > 0 {
        let mut frac = String::new();
        let mut i = weight + 1;
        while frac.len() < dscale {
            let _ = write!(frac, "{:04}", digit(i));
            i += 1;
        }
        frac.truncate(dscale);
        s.push('.');
        s.push_str(&frac);
    }
    Some(s)
}

/// Runs the statement and decodes every cell; values without a native conversion are turned
/// into their PostgreSQL text form by the server (its output function, via `concat($1)`).
async fn fetch(client: &Client, stmt: &Statement, values: &[Param]) -> Result<Vec<Vec<Cell>>, tokio_postgres::Error> {
    let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
    let rows = client.query(stmt, &refs).await?;
    let mut out = Vec::with_capacity(rows.len());
    let mut as_text: HashMap<Vec<u32>, Statement> = HashMap::new();
    for row in rows {
        let mut cells = (0..row.len()).map(|i| row.try_get::<_, Cell>(i)).collect::<Result<Vec<_>, _>>()?;
        let others: Vec<usize> = (0..cells.len()).filter(|&i| matches!(cells[i], Cell::Other(..))).collect();
        if others.is_empty() {
            out.push(cells);
            continue;
        }
        let mut types = Vec::new();
        let mut raws = Vec::new();
        for &i in &others {
            if let Cell::Other(ty, raw) = &cells[i] {
                types.push(ty.clone());
                raws.push(Param::Raw(raw.clone()));
            }
        }
        let key: Vec<u32> = types.iter().map(Type::oid).collect();
        let stmt = match as_text.get(&key) {
            Some(s) => s.clone(),
            None => {
                // concat() renders with the type's output function (`::text` may differ, e.g. for inet).
                // Qualified: the session keeps the database's search_path, where a planted
                // `concat(sometype)` would otherwise be the better match.
                let cols: Vec<String> = (1..=types.len()).map(|n| format!("pg_catalog.concat(${n})")).collect();
                match client.prepare_typed(&format!("select {}", cols.join(", ")), &types).await {
                    Ok(s) => {
                        as_text.insert(key, s.clone());
                        s
                    }
                    Err(_) => {
                        fallback_text(&mut cells, &others);
                        out.push(cells);
                        continue;
                    }
                }
            }
        };
        let refs: Vec<&(dyn ToSql + Sync)> = raws.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        match client.query_one(&stmt, &refs).await {
            Ok(r) => {
                for (k, &i) in others.iter().enumerate() {
                    cells[i] = match r.try_get::<_, Option<String>>(k) {
                        Ok(Some(t)) => Cell::Text(t),
                        _ => Cell::Null,
                    };
                }
            }
            Err(_) => fallback_text(&mut cells, &others),
        }
        out.push(cells);
    }
    Ok(out)
}

/// Last resort for a value the server cannot turn into text (e.g. an anonymous record).
fn fallback_text(cells: &mut [Cell], which: &[usize]) {
    for &i in which {
        if let Cell::Other(ty, raw) = &cells[i] {
            let text = match std::str::from_utf8(raw) {
                Ok(s) => s.to_string(),
                Err(_) => format!("<{} value: {} bytes>", ty.name(), raw.len()),
            };
            cells[i] = Cell::Text(text);
        }
    }
}

/// Cell → Python, with the modules it needs looked up once per query.
struct Converter<'py> {
    py: Python<'py>,
    decimal: Bound<'py, PyAny>,
    json_loads: Bound<'py, PyAny>,
}

impl<'py> Converter<'py> {
    fn new(py: Python<'py>) -> PyResult<Self> {
        Ok(Self {
            py,
            decimal: py.import("decimal")?.getattr("Decimal")?,
            json_loads: py.import("json")?.getattr("loads")?,
        })
    }

    fn to_py(&self, c: Cell) -> PyResult<Bound<'py, PyAny>> {
        let py = self.py;
        Ok(match c {
            Cell::Null => py.None().into_bound(py),
            Cell::Bool(b) => PyBool::new(py, b).to_owned().into_any(),
            Cell::Int(i) => i.into_pyobject(py)?.into_any(),
            Cell::Float(f) => PyFloat::new(py, f).into_any(),
            Cell::Numeric(s) => self.decimal.call1((s,))?,
            Cell::Text(s) => PyString::new(py, &s).into_any(),
            Cell::Tz(t) => t.into_pyobject(py)?.into_any(),
            Cell::Ts(t) => t.into_pyobject(py)?.into_any(),
            Cell::Date(d) => d.into_pyobject(py)?.into_any(),
            Cell::Json(s) => self.json_loads.call1((s,))?,
            Cell::Other(ty, raw) => {
                let mut cells = [Cell::Other(ty, raw)];
                fallback_text(&mut cells, &[0]);
                let [c] = cells;
                self.to_py(c)?
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Parameters: Python values → PostgreSQL values of the statement's declared types

/// A parameter value, encoded for its declared type.
#[derive(Debug)]
enum Param {
    Null,
    Bool(bool),
    I16(i16),
    I32(i32),
    I64(i64),
    Oid(u32),
    F32(f32),
    F64(f64),
    Text(String),
    Json {
        text: String,
        binary: bool,
    },
    Tz(DateTime<Utc>),
    Ts(NaiveDateTime),
    Date(NaiveDate),
    /// Already in the type's binary format (bytea, or converted by the server from text).
    Raw(Vec<u8>),
}

impl ToSql for Param {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self {
            Param::Null => Ok(IsNull::Yes),
            Param::Bool(v) => v.to_sql(ty, out),
            Param::I16(v) => v.to_sql(ty, out),
            Param::I32(v) => v.to_sql(ty, out),
            Param::I64(v) => v.to_sql(ty, out),
            Param::Oid(v) => v.to_sql(ty, out),
            Param::F32(v) => v.to_sql(ty, out),
            Param::F64(v) => v.to_sql(ty, out),
            Param::Tz(v) => v.to_sql(ty, out),
            Param::Ts(v) => v.to_sql(ty, out),
            Param::Date(v) => v.to_sql(ty, out),
            Param::Json { text, binary } => {
                if *binary {
                    out.put_u8(1);
                }
                out.put_slice(text.as_bytes());
                Ok(IsNull::No)
            }
            Param::Text(s) => {
                out.put_slice(s.as_bytes());
                Ok(IsNull::No)
            }
            Param::Raw(b) => {
                out.put_slice(b);
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// A parameter ready to send, or text for the server to convert to the declared type.
enum Conv {
    Ready(Param),
    ViaText(String),
}

fn base_type(ty: &Type) -> &Type {
    match ty.kind() {
        Kind::Domain(inner) => base_type(inner),
        _ => ty,
    }
}

/// Converts parameter `$n`: native encodings where the Python type matches the declared type
/// (ints to the declared width, floats, str, bool, bytes, datetimes, JSON), otherwise the value's
/// text form, converted by the server with the type's own input function.
fn to_param(v: &Bound<'_, PyAny>, declared: &Type, n: usize) -> PyResult<Conv> {
    if v.is_none() {
        return Ok(Conv::Ready(Param::Null));
    }
    let ty = base_type(declared);
    let py = v.py();
    let is_bool = v.cast::<PyBool>().is_ok();
    let is_int = !is_bool && v.cast::<PyInt>().is_ok();
    let is_float = v.cast::<PyFloat>().is_ok();
    let is_str = v.cast::<PyString>().is_ok();
    let datetime = py.import("datetime")?;
    let is_datetime = v.is_instance(&datetime.getattr("datetime")?)?;
    let is_date = !is_datetime && v.is_instance(&datetime.getattr("date")?)?;
    let aware = is_datetime && !v.call_method0("utcoffset")?.is_none();
    let range = |e: PyErr| {
        PyValueError::new_err(format!("parameter ${n}: {v} does not fit PostgreSQL type {} ({e})", declared.name()))
    };
    let ready = |p| Ok(Conv::Ready(p));
    match *ty {
        Type::BOOL if is_bool => return ready(Param::Bool(v.extract()?)),
        Type::INT2 if is_int => return ready(Param::I16(v.extract().map_err(range)?)),
        Type::INT4 if is_int => return ready(Param::I32(v.extract().map_err(range)?)),
        Type::INT8 if is_int => return ready(Param::I64(v.extract().map_err(range)?)),
        Type::OID if is_int => return ready(Param::Oid(v.extract().map_err(range)?)),
        Type::FLOAT4 if is_int || is_float => return ready(Param::F32(v.extract::<f64>()? as f32)),
        Type::FLOAT8 if is_int || is_float => return ready(Param::F64(v.extract()?)),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN if is_str => {
            return ready(Param::Text(v.extract()?))
        }
        Type::JSON | Type::JSONB => {
            let text: String =
                if is_str { v.extract()? } else { py.import("json")?.call_method1("dumps", (v,))?.extract()? };
            return ready(Param::Json { text, binary: *ty == Type::JSONB });
        }
        Type::BYTEA if v.cast::<PyBytes>().is_ok() || v.cast::<PyByteArray>().is_ok() => {
            return ready(Param::Raw(v.extract()?))
        }
        Type::TIMESTAMPTZ if aware => {
            return ready(Param::Tz(v.extract::<DateTime<FixedOffset>>()?.with_timezone(&Utc)))
        }
        Type::TIMESTAMP if is_datetime && !aware => return ready(Param::Ts(v.extract()?)),
        Type::DATE if is_date => return ready(Param::Date(v.extract()?)),
        _ => {}
    }
    if let Some(enum_like) = match ty.kind() {
        Kind::Enum(_) if is_str => Some(Param::Text(v.extract()?)),
        _ => None,
    } {
        return ready(enum_like);
    }
    // Everything else goes through the type's text input: numeric, uuid, interval, inet,
    // arrays written as '{1,2}', a naive datetime for timestamptz (session TimeZone), …
    let text: String = if is_str {
        v.extract()?
    } else if is_bool {
        if v.is_truthy()? { "true" } else { "false" }.to_string()
    } else if is_datetime || is_date || v.is_instance(&datetime.getattr("time")?)? {
        v.call_method0("isoformat")?.extract()?
    } else if v.is_instance(&datetime.getattr("timedelta")?)? {
        let d: chrono::TimeDelta = v.extract()?;
        match d.num_microseconds() {
            Some(us) => format!("{us} microseconds"),
            None => return Err(PyValueError::new_err(format!("parameter ${n}: {v} is too long an interval"))),
        }
    } else if is_int
        || is_float
        || v.is_instance(&py.import("decimal")?.getattr("Decimal")?)?
        || v.is_instance(&py.import("uuid")?.getattr("UUID")?)?
    {
        v.str()?.extract()?
    } else {
        return Err(PyTypeError::new_err(format!(
            "parameter ${n}: cannot pass a {} as PostgreSQL type {}",
            type_name(v),
            declared.name()
        )));
    };
    Ok(Conv::ViaText(text))
}

/// The server's conversion of `text` to `ty` (its input function), as a raw binary value.
async fn from_text(client: &Client, text: &str, ty: &Type) -> Result<Param, tokio_postgres::Error> {
    let sql = format!(
        "select $1::{}.{}",
        restorecheck_core::postgres::quote_ident(ty.schema()),
        restorecheck_core::postgres::quote_ident(ty.name())
    );
    let stmt = client.prepare_typed(&sql, &[Type::TEXT]).await?;
    let row = client.query_one(&stmt, &[&text]).await?;
    Ok(match row.try_get::<_, Raw>(0)? {
        Raw(Some(b)) => Param::Raw(b),
        Raw(None) => Param::Null,
    })
}
