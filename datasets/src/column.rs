//! Vec-backed column buffers that the generators fill in tight loops and
//! then hand to Arrow without copying.
//!
//! Builders from `arrow::array` check capacity and validity per value; these
//! buffers only push into `Vec`s, and the generators write string bytes in
//! place (no `String` per value). The finished arrays own the `Vec`
//! allocations.

use std::sync::Arc;

use arrow::array::{ArrayRef, PrimitiveArray, StringArray};
use arrow::buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::ArrowPrimitiveType;

use crate::error::{Error, Result};

/// A UTF-8 column: `i32` offsets plus one contiguous value buffer.
#[derive(Debug)]
pub(crate) struct StringColumn {
    offsets: Vec<i32>,
    values: Vec<u8>,
}

impl StringColumn {
    /// An empty column with room for `rows` values of about `bytes_per_row` bytes.
    pub(crate) fn with_capacity(rows: usize, bytes_per_row: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        Self {
            offsets,
            values: Vec::with_capacity(rows * bytes_per_row),
        }
    }

    /// Appends one value.
    #[inline(always)]
    pub(crate) fn push(&mut self, value: &[u8]) {
        self.values.extend_from_slice(value);
        self.end_value();
    }

    /// The value buffer, to write the bytes of the current value into before
    /// calling [`StringColumn::end_value`]. Callers write ASCII only.
    #[inline(always)]
    pub(crate) fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.values
    }

    /// Ends the current value at the end of the value buffer.
    #[inline(always)]
    pub(crate) fn end_value(&mut self) {
        // Truncation is caught in `finish`, which checks the total length.
        self.offsets.push(self.values.len() as i32);
    }

    /// Builds the Arrow array, validating offsets and UTF-8.
    pub(crate) fn finish(self, nulls: Option<NullBuffer>, what: &str) -> Result<ArrayRef> {
        if i32::try_from(self.values.len()).is_err() {
            return Err(Error::invalid_config(format!(
                "{what}: {} bytes of string data in one batch exceed the 2 GiB limit of Utf8; \
                 use a smaller batch size",
                self.values.len()
            )));
        }
        let offsets = OffsetBuffer::new(ScalarBuffer::from(self.offsets));
        let array = StringArray::try_new(offsets, Buffer::from_vec(self.values), nulls)
            .map_err(Error::arrow(what))?;
        Ok(Arc::new(array))
    }
}

/// Wraps a value vector (and optional validity) as a primitive array.
pub(crate) fn primitive<T: ArrowPrimitiveType>(
    values: Vec<T::Native>,
    nulls: Option<NullBuffer>,
) -> PrimitiveArray<T> {
    PrimitiveArray::new(ScalarBuffer::from(values), nulls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Array;

    #[test]
    fn string_column_round_trips() -> Result<()> {
        let mut col = StringColumn::with_capacity(3, 4);
        col.push(b"ab");
        col.buffer().extend_from_slice(b"cd");
        col.buffer().push(b'e');
        col.end_value();
        col.push(b"");
        let array = col.finish(None, "test")?;
        let array = array
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("finish builds a StringArray");
        assert_eq!(array.len(), 3);
        assert_eq!(array.value(0), "ab");
        assert_eq!(array.value(1), "cde");
        assert_eq!(array.value(2), "");
        Ok(())
    }
}
