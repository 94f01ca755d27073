//! Arrow across the boundary. In: any object with `__arrow_c_stream__`
//! (pyarrow, polars, DuckDB, pandas through pyarrow) read through
//! pyo3-arrow; id columns become `IdSlice`s over the Arrow buffers (no copy
//! for a single-chunk int64 or large-utf8 column; other integer widths are
//! widened, other string layouts cast once). Out: vectors become Arrow
//! buffers without a copy, then one `pyarrow.Table`.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampNanosecondType, UInt64Type};
use arrow_array::{
    new_empty_array, Array, ArrayRef, Int64Array, LargeStringArray, PrimitiveArray, RecordBatch,
    StringArray, UInt32Array,
};
use std::ptr::NonNull;

use arrow_buffer::{ArrowNativeType, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use pyo3::prelude::*;
use pyo3_arrow::{PyRecordBatchReader, PyTable};
use rayon::prelude::*;
use referralgraph_core::{
    self as core, par, Forest, IdKind, IdSlice, IdValues, StrColumn, NO_USER, NULL_TS,
};

use crate::errors::{invalid_err, schema_err};

fn arrow_err(e: ArrowError) -> PyErr {
    invalid_err(format!("could not read Arrow data: {e}"))
}

/// A whole input table, read from a PyCapsule stream.
pub struct InputTable {
    pub what: &'static str,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
}

impl InputTable {
    pub fn read(reader: PyRecordBatchReader, what: &'static str) -> PyResult<Self> {
        let reader = reader.into_reader()?;
        let schema = reader.schema();
        let batches = reader.collect::<Result<Vec<_>, _>>().map_err(arrow_err)?;
        Ok(InputTable {
            what,
            schema,
            batches,
        })
    }

    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }

    /// The named column as one array (zero copy when there is one batch).
    pub fn column(&self, name: &str) -> PyResult<Option<ArrayRef>> {
        let Ok(i) = self.schema.index_of(name) else {
            return Ok(None);
        };
        let parts: Vec<&dyn Array> = self.batches.iter().map(|b| b.column(i).as_ref()).collect();
        Ok(Some(match parts.len() {
            0 => new_empty_array(self.schema.field(i).data_type()),
            1 => self.batches[0].column(i).clone(),
            _ => arrow_select::concat::concat(&parts).map_err(arrow_err)?,
        }))
    }

    pub fn require(&self, name: &str) -> PyResult<ArrayRef> {
        self.column(name)?.ok_or_else(|| {
            let have: Vec<&str> = self
                .schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            schema_err(format!(
                "{} table has no column {name:?} (columns: {})",
                self.what,
                have.join(", ")
            ))
        })
    }
}

/// An integer column (any width, or a dictionary of integers) as int64:
/// zero copy for int64, widened otherwise; a uint64 above i64::MAX is an
/// error naming the row (`what`: "id", "amount", ...).
pub fn int64_values(column: &str, arr: &ArrayRef, what: &str) -> PyResult<Int64Array> {
    if arr.data_type() == &DataType::Int64 {
        return Ok(arr.as_primitive::<Int64Type>().clone());
    }
    let cast = |to: &DataType| {
        arrow_cast::cast(arr, to).map_err(|e| schema_err(format!("column {column}: {e}")))
    };
    let values = match arr.data_type() {
        DataType::Dictionary(_, v) => v.as_ref().clone(),
        other => other.clone(),
    };
    if values == DataType::UInt64 {
        let u = cast(&DataType::UInt64)?;
        let u = u.as_primitive::<UInt64Type>();
        if let Some(row) = (0..u.len()).find(|&i| u.is_valid(i) && u.value(i) > i64::MAX as u64) {
            return Err(invalid_err(format!(
                "column {column}, row {row} ({what} {}): {what} does not fit in int64",
                u.value(row)
            )));
        }
    }
    Ok(cast(&DataType::Int64)?.as_primitive::<Int64Type>().clone())
}

/// utf8, large utf8 or utf8 view.
pub fn is_string(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// One bool per row (`None`: no nulls), unpacked in parallel on the
/// process's pool (the GIL may be held here).
pub(crate) fn validity(arr: &dyn Array) -> Option<Vec<bool>> {
    let nulls = arr.logical_nulls().filter(|n| n.null_count() > 0)?;
    let bits = nulls.inner();
    Some(core::pool::run(|| {
        par::unpack_bits(bits.values(), bits.offset(), bits.len())
    }))
}

/// An id column, normalised to int64 or large-utf8.
pub enum IdColumn {
    Int(Int64Array),
    Str(LargeStringArray),
}

impl IdColumn {
    /// Integer columns of any width are widened to int64; string, large
    /// string, string view and dictionary-of-string columns become large utf8.
    pub fn from_array(column: &str, arr: &ArrayRef) -> PyResult<Self> {
        let dt = match arr.data_type() {
            DataType::Dictionary(_, v) => v.as_ref().clone(),
            other => other.clone(),
        };
        let cast = |to: &DataType| {
            arrow_cast::cast(arr, to)
                .map_err(|e| schema_err(format!("column {column}: cannot read ids: {e}")))
        };
        match dt {
            dt if dt.is_integer() => Ok(IdColumn::Int(int64_values(column, arr, "id")?)),
            DataType::LargeUtf8 if !matches!(arr.data_type(), DataType::Dictionary(..)) => {
                Ok(IdColumn::Str(arr.as_string::<i64>().clone()))
            }
            DataType::Utf8 if !matches!(arr.data_type(), DataType::Dictionary(..)) => {
                // The bytes stay where they are; only the offsets widen, in
                // parallel (a cast would copy every id on one thread).
                let a = arr.as_string::<i32>();
                let wide: Vec<i64> =
                    core::pool::run(|| a.value_offsets().par_iter().map(|&o| o as i64).collect());
                // SAFETY: the same offsets, widened, over the same valid
                // utf8 values: a valid large utf8 layout.
                Ok(IdColumn::Str(unsafe {
                    LargeStringArray::new_unchecked(
                        OffsetBuffer::new_unchecked(ScalarBuffer::from(wide)),
                        a.values().clone(),
                        a.nulls().cloned(),
                    )
                }))
            }
            dt if is_string(&dt) => Ok(IdColumn::Str(
                cast(&DataType::LargeUtf8)?.as_string::<i64>().clone(),
            )),
            DataType::Null => Ok(IdColumn::Int(Int64Array::new_null(arr.len()))),
            other => Err(schema_err(format!(
                "column {column} has type {other}; ids must be integers or strings"
            ))),
        }
    }

    pub fn kind(&self) -> IdKind {
        match self {
            IdColumn::Int(_) => IdKind::Int,
            IdColumn::Str(_) => IdKind::Str,
        }
    }

    pub fn slice(&self) -> IdSlice<'_> {
        match self {
            IdColumn::Int(a) => IdSlice::Int(a.values()),
            IdColumn::Str(a) => IdSlice::Str {
                offsets: a.value_offsets(),
                data: a.value_data(),
            },
        }
    }

    pub fn validity(&self) -> Option<Vec<bool>> {
        match self {
            IdColumn::Int(a) => validity(a),
            IdColumn::Str(a) => validity(a),
        }
    }

    /// Casts an all-null column to the kind of `other` (a referrer column of
    /// nulls only comes in as the null type).
    pub fn null_like(len: usize, kind: IdKind) -> Self {
        match kind {
            IdKind::Int => IdColumn::Int(Int64Array::new_null(len)),
            IdKind::Str => IdColumn::Str(LargeStringArray::new_null(len)),
        }
    }

    pub fn is_all_null_type(arr: &ArrayRef) -> bool {
        arr.data_type() == &DataType::Null
    }
}

/// A string attribute column (channel), as large utf8.
pub struct StrValues {
    arr: LargeStringArray,
    valid: Option<Vec<bool>>,
}

impl StrValues {
    pub fn from_array(column: &str, arr: &ArrayRef) -> PyResult<Self> {
        let ok = match arr.data_type() {
            DataType::Dictionary(_, v) => is_string(v),
            dt => is_string(dt) || dt == &DataType::Null,
        };
        if !ok {
            return Err(schema_err(format!(
                "column {column} has type {}; expected strings",
                arr.data_type()
            )));
        }
        let arr = arrow_cast::cast(arr, &DataType::LargeUtf8)
            .map_err(|e| schema_err(format!("column {column}: {e}")))?
            .as_string::<i64>()
            .clone();
        let valid = validity(&arr);
        Ok(StrValues { arr, valid })
    }

    pub fn column(&self) -> StrColumn<'_> {
        StrColumn {
            offsets: self.arr.value_offsets(),
            data: self.arr.value_data(),
            valid: self.valid.as_deref(),
        }
    }
}

/// A timestamp column as nanoseconds since the epoch (UTC), plus its zone.
pub struct Timestamps {
    /// Nanoseconds (`NULL_TS` at nulls); the column's own buffer when it
    /// is already null-free nanoseconds.
    pub ns: ScalarBuffer<i64>,
    pub valid: Option<Vec<bool>>,
    pub tz: Option<Arc<str>>,
}

impl Timestamps {
    /// Timestamps of any unit (with or without zone), date32 or date64.
    /// A value outside the nanosecond range (years 1677..2262) is an error.
    pub fn from_array(column: &str, arr: &ArrayRef) -> PyResult<Self> {
        let (per_unit, tz): (i64, Option<Arc<str>>) = match arr.data_type() {
            DataType::Timestamp(unit, tz) => (
                match unit {
                    TimeUnit::Second => 1_000_000_000,
                    TimeUnit::Millisecond => 1_000_000,
                    TimeUnit::Microsecond => 1_000,
                    TimeUnit::Nanosecond => 1,
                },
                tz.clone(),
            ),
            DataType::Date32 => (86_400 * 1_000_000_000, None),
            DataType::Date64 => (1_000_000, None),
            DataType::Null => (1, None),
            other => {
                return Err(schema_err(format!(
                    "column {column} has type {other}; expected a timestamp or a date"
                )))
            }
        };
        let raw = arrow_cast::cast(arr, &DataType::Int64)
            .map_err(|e| schema_err(format!("column {column}: {e}")))?;
        // The scans are parallel: on this process's pool (see `core::pool`),
        // as the GIL is held here.
        core::pool::run(|| {
            let raw = raw.as_primitive::<Int64Type>();
            let valid = validity(raw);
            let values = raw.values();
            if per_unit == 1 && valid.is_none() {
                // Zero copy; only NULL_TS itself is out of range.
                if let Some(row) = par::position_first(values.len(), |r| values[r] == NULL_TS) {
                    return Err(out_of_range(column, row, values[row]));
                }
                return Ok(Timestamps {
                    ns: values.clone(),
                    valid,
                    tz,
                });
            }
            let ns: Vec<i64> = (0..values.len())
                .into_par_iter()
                .map(|row| {
                    if valid.as_ref().is_some_and(|m| !m[row]) {
                        NULL_TS
                    } else {
                        // i64::MIN marks an overflow; NULL_TS is never a real time.
                        values[row].checked_mul(per_unit).unwrap_or(NULL_TS)
                    }
                })
                .collect();
            let bad = par::position_first(ns.len(), |row| {
                ns[row] == NULL_TS && valid.as_ref().is_none_or(|m| m[row])
            });
            if let Some(row) = bad {
                return Err(out_of_range(column, row, values[row]));
            }
            Ok(Timestamps {
                ns: ns.into(),
                valid,
                tz,
            })
        })
    }
}

fn out_of_range(column: &str, row: usize, value: i64) -> PyErr {
    invalid_err(format!(
        "column {column}, row {row}: timestamp {value} is outside the range of \
         nanosecond timestamps (years 1677 to 2262)"
    ))
}

/// The owner of Arrow buffers that point into a forest: keeps it alive.
struct ForestOwner(#[allow(dead_code)] Arc<Forest>);
impl std::panic::RefUnwindSafe for ForestOwner {}

/// A zero-copy Arrow buffer over `values`, a slice held by `forest`.
fn forest_buffer<T: ArrowNativeType>(forest: &Arc<Forest>, values: &[T]) -> ScalarBuffer<T> {
    let ptr = NonNull::new(values.as_ptr() as *mut u8).unwrap_or(NonNull::dangling());
    // SAFETY: `values` lives inside `forest`, which is never mutated once
    // built (its lazy caches are separate allocations) and which the buffer
    // keeps alive through its owner; a Vec's pointer is aligned for T.
    let buf = unsafe {
        Buffer::from_custom_allocation(
            ptr,
            std::mem::size_of_val(values),
            Arc::new(ForestOwner(forest.clone())),
        )
    };
    ScalarBuffer::new(buf, 0, values.len())
}

/// The user id column in index order: zero copy for integer ids.
pub fn user_id_array(forest: &Arc<Forest>) -> ArrayRef {
    match forest.ids() {
        IdValues::Int(v) => Arc::new(Int64Array::new(forest_buffer(forest, v), None)),
        ids => ids_array(ids),
    }
}

/// The depth column in index order, zero copy.
pub fn depth_array(forest: &Arc<Forest>) -> ArrayRef {
    Arc::new(UInt32Array::new(
        forest_buffer(forest, forest.depth()),
        None,
    ))
}

/// All ids as an Arrow array (int64, or utf8 / large utf8 by size).
pub fn ids_array(ids: &IdValues) -> ArrayRef {
    match ids {
        IdValues::Int(v) => Arc::new(Int64Array::from(v.clone())),
        IdValues::Str { offsets, data } => str_array(offsets.clone(), data.clone(), None),
    }
}

fn str_array(offsets: Vec<i64>, data: Vec<u8>, nulls: Option<NullBuffer>) -> ArrayRef {
    if data.len() < i32::MAX as usize {
        let offsets: Vec<i32> = core::pool::run(|| offsets.par_iter().map(|&o| o as i32).collect());
        // SAFETY: the offsets come from a valid large-utf8 layout (monotone,
        // within `data`, on UTF-8 boundaries: every id was valid UTF-8).
        Arc::new(unsafe {
            StringArray::new_unchecked(
                OffsetBuffer::new_unchecked(ScalarBuffer::from(offsets)),
                data.into(),
                nulls,
            )
        })
    } else {
        // SAFETY: as above.
        Arc::new(unsafe {
            LargeStringArray::new_unchecked(
                OffsetBuffer::new_unchecked(ScalarBuffer::from(offsets)),
                data.into(),
                nulls,
            )
        })
    }
}

/// The ids of `users` (`NO_USER`: null), e.g. referrer ids or beneficiaries.
pub fn gather_ids(ids: &IdValues, users: &[u32]) -> ArrayRef {
    gather_slice(ids.as_slice(), users)
}

/// The ids at `items` of a graph's ids or an input id column (`NO_USER`:
/// null), as an int64 or utf8 array.
pub fn gather_slice(ids: IdSlice<'_>, items: &[u32]) -> ArrayRef {
    let nulls = items
        .contains(&NO_USER)
        .then(|| NullBuffer::from(items.iter().map(|&u| u != NO_USER).collect::<Vec<_>>()));
    // Called with the GIL held: the gather runs on this process's pool.
    match core::pool::run(|| ids.gather(items)) {
        IdValues::Int(vals) => Arc::new(Int64Array::new(vals.into(), nulls)),
        IdValues::Str { offsets, data } => str_array(offsets, data, nulls),
    }
}

/// Nanosecond timestamps (`NULL_TS`: null) in the given zone.
pub fn ts_array(ns: Vec<i64>, tz: Option<Arc<str>>) -> ArrayRef {
    let nulls = ns
        .contains(&NULL_TS)
        .then(|| NullBuffer::from(ns.iter().map(|&t| t != NULL_TS).collect::<Vec<_>>()));
    Arc::new(PrimitiveArray::<TimestampNanosecondType>::new(ns.into(), nulls).with_timezone_opt(tz))
}

pub fn u32_array(v: Vec<u32>, nulls_at: Option<u32>) -> ArrayRef {
    let nulls = nulls_at
        .filter(|x| v.contains(x))
        .map(|x| NullBuffer::from(v.iter().map(|&u| u != x).collect::<Vec<_>>()));
    Arc::new(UInt32Array::new(v.into(), nulls))
}

/// Assembles named columns into a `pyarrow.Table`.
pub fn to_pyarrow(py: Python<'_>, columns: Vec<(&str, ArrayRef)>) -> PyResult<Py<PyAny>> {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, a)| Field::new(*name, a.data_type().clone(), true))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let arrays = columns.into_iter().map(|(_, a)| a).collect();
    let batch = RecordBatch::try_new(schema.clone(), arrays)
        .map_err(|e| crate::errors::internal_err(e.to_string()))?;
    let table = PyTable::try_new(vec![batch], schema)?;
    Ok(table.into_pyarrow(py)?.unbind())
}
