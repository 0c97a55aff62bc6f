//! The Parquet encoder alone, as the benchmarks compare against it: the table's writer
//! settings for `ArrowWriter`, batches fed as the table's writer feeds them, and the bytes of
//! Arrow data a batch holds.
//!
//! ```ignore
//! #[path = "common/raw_parquet.rs"]
//! mod raw_parquet;
//! ```

// Shared by the benchmarks; each uses a part.
#![allow(dead_code)]

use std::io::Write;

use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding};
use parquet::file::properties::{EnabledStatistics, WriterPropertiesBuilder};
use parquet::schema::types::ColumnPath;
use sales_history::{DEFAULT_ROW_GROUP_ROWS, EmbeddingEncoding};

/// Rows per `write` call, as the table's writer is fed.
pub const SLICE_ROWS: usize = 1024;

/// The table's writer settings for a table with defaults and `encoding` for the embedding
/// elements (mirrors `src/parquet_props.rs`; see `EMBEDDING_ENCODING_PROPERTY`).
pub fn table_props(encoding: EmbeddingEncoding) -> WriterPropertiesBuilder {
    let element = ColumnPath::from(vec!["embedding".into(), "list".into(), "element".into()]);
    let element_encoding = match encoding {
        EmbeddingEncoding::Plain => Encoding::PLAIN,
        _ => Encoding::BYTE_STREAM_SPLIT,
    };
    parquet::file::properties::WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(DEFAULT_ROW_GROUP_ROWS))
        .set_column_dictionary_enabled(element.clone(), false)
        .set_column_encoding(element.clone(), element_encoding)
        .set_column_statistics_enabled(element, EnabledStatistics::None)
}

/// Writes `batch` as [`SLICE_ROWS`]-row slices.
pub fn write_sliced<W: Write + Send>(
    writer: &mut ArrowWriter<W>,
    batch: &RecordBatch,
) -> parquet::errors::Result<()> {
    let mut offset = 0;
    while offset < batch.num_rows() {
        let n = SLICE_ROWS.min(batch.num_rows() - offset);
        writer.write(&batch.slice(offset, n))?;
        offset += n;
    }
    Ok(())
}

/// Bytes of Arrow data the batches hold (buffers as used, not builders' spare capacity).
pub fn arrow_bytes(batches: &[RecordBatch]) -> usize {
    batches
        .iter()
        .flat_map(|b| b.columns())
        .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0))
        .sum()
}
