//! Blocking (materialised) channels: what a batch job's stages hand to each other.
//!
//! The producer of a blocking channel keeps everything it sends as the channel's *partition*,
//! complete once the producer sends end-of-input. The consumer runs in a later stage, started
//! only when every partition it reads is complete, and reads it from the start. Partitions
//! outlive the tasks that wrote them: a failed stage runs again from its inputs' partitions,
//! and a producer that runs again replaces its own.
//!
//! A partition stays in memory while the exchange's partitions together hold less than its
//! memory limit; past it, a producer moves its partition into an Arrow IPC file of the spill
//! directory (`io.tmp.dirs`) and writes on there. Memory and files go when the exchange is
//! dropped (the job ends).
//!
//! Watermarks between batches are kept beside the batches with their row position, so the
//! consumer sees the elements in the order they were sent. Checkpoint barriers never reach a
//! blocking channel: a job with checkpoints runs pipelined.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;

use super::{ChannelId, ExchangeFactory, InputChannel, OutputChannel, SlotWaker};
use crate::element::{StreamElement, Watermark};
use crate::spill::{SpillFile, SpillReader, SpillWriter, batch_memory};
use crate::{Error, Result};

/// Where a partition's batches are.
#[derive(Debug)]
enum Rows {
    Memory(Vec<RecordBatch>),
    File(SpillFile),
}

/// A finished partition: the batches of one channel, and the watermarks sent between them.
#[derive(Debug)]
struct Partition {
    rows: Rows,
    /// Each watermark with the number of rows sent before it.
    watermarks: Vec<(usize, Watermark)>,
    /// Bytes of `Rows::Memory` counted in the exchange's `held`; given back on drop.
    held_bytes: usize,
    held: Arc<AtomicUsize>,
}

impl Partition {
    fn bytes(&self) -> u64 {
        match &self.rows {
            Rows::Memory(_) => self.held_bytes as u64,
            Rows::File(file) => file.bytes(),
        }
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.held.fetch_sub(self.held_bytes, Ordering::AcqRel);
    }
}

type Partitions = Arc<Mutex<HashMap<ChannelId, Arc<Partition>>>>;

/// Creates blocking channels. The lock guards the map of finished partitions, touched once
/// per channel when it is opened or finished.
pub struct BlockingExchange {
    dir: PathBuf,
    /// Batches smaller than this many rows are gathered into one before they are written.
    gather_rows: usize,
    /// Bytes the exchange's partitions may hold in memory together.
    memory_limit: usize,
    held: Arc<AtomicUsize>,
    partitions: Partitions,
}

impl BlockingExchange {
    /// Partitions share `memory_limit` bytes of memory, and spill into files in `dir`.
    pub fn new(dir: impl Into<PathBuf>, gather_rows: usize, memory_limit: usize) -> Self {
        BlockingExchange {
            dir: dir.into(),
            gather_rows,
            memory_limit,
            held: Arc::default(),
            partitions: Partitions::default(),
        }
    }
}

impl ExchangeFactory for BlockingExchange {
    fn output(&self, id: ChannelId, _producer: &SlotWaker) -> Result<Box<dyn OutputChannel>> {
        Ok(Box::new(BlockingOutput {
            id,
            dir: self.dir.clone(),
            gather_rows: self.gather_rows,
            memory_limit: self.memory_limit,
            held: self.held.clone(),
            batches: Vec::new(),
            held_bytes: 0,
            writer: None,
            rows: 0,
            watermarks: Vec::new(),
            partitions: self.partitions.clone(),
            finished: false,
        }))
    }

    fn input(&self, id: ChannelId, _consumer: &SlotWaker) -> Result<Box<dyn InputChannel>> {
        let partition = self
            .partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
            .ok_or_else(|| {
                Error::Internal(format!(
                    "the blocking partition of channel {id:?} is not complete: its consumer \
                     started before its producer finished"
                ))
            })?;
        Ok(Box::new(BlockingInput {
            partition,
            reader: None,
            next_batch: 0,
            rows_read: 0,
            next_watermark: 0,
            ended: false,
        }))
    }
}

struct BlockingOutput {
    id: ChannelId,
    dir: PathBuf,
    gather_rows: usize,
    memory_limit: usize,
    /// The exchange's bytes in memory.
    held: Arc<AtomicUsize>,
    /// The batches sent, while the partition is in memory.
    batches: Vec<RecordBatch>,
    held_bytes: usize,
    /// Once the partition went to a file: its writer.
    writer: Option<SpillWriter>,
    rows: usize,
    watermarks: Vec<(usize, Watermark)>,
    partitions: Partitions,
    finished: bool,
}

impl BlockingOutput {
    fn what(&self) -> String {
        format!(
            "exchange-{}-{}-{}",
            self.id.edge, self.id.from.0, self.id.to.0
        )
    }

    /// Takes `batch` into memory if the exchange's limit allows; otherwise moves the partition
    /// to a file and writes it there.
    fn push(&mut self, batch: RecordBatch) -> Result<()> {
        self.rows += batch.num_rows();
        if self.writer.is_none() {
            let bytes = batch_memory(&batch);
            let before = self.held.fetch_add(bytes, Ordering::AcqRel);
            if before + bytes <= self.memory_limit {
                self.held_bytes += bytes;
                self.batches.push(batch);
                return Ok(());
            }
            self.held.fetch_sub(bytes, Ordering::AcqRel);
            self.start_file(&batch)?;
        }
        match &mut self.writer {
            Some(writer) => writer.write(&batch),
            None => unreachable!("the file was started above"),
        }
    }

    /// Writes the batches held so far into a new file, keeping watermark positions exact.
    fn start_file(&mut self, schema_of: &RecordBatch) -> Result<()> {
        let mut writer = SpillWriter::create(&self.dir, &self.what(), &schema_of.schema())?
            .coalescing(self.gather_rows);
        let mut written = 0;
        let mut watermarks = self.watermarks.iter().map(|(at, _)| *at).peekable();
        for batch in std::mem::take(&mut self.batches) {
            while watermarks.next_if(|&at| at <= written).is_some() {
                writer.write_pending()?;
            }
            written += batch.num_rows();
            writer.write(&batch)?;
        }
        self.held.fetch_sub(self.held_bytes, Ordering::AcqRel);
        self.held_bytes = 0;
        self.writer = Some(writer);
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        let rows = match self.writer.take() {
            Some(writer) => Rows::File(writer.finish()?),
            None => Rows::Memory(std::mem::take(&mut self.batches)),
        };
        let partition = Arc::new(Partition {
            rows,
            watermarks: std::mem::take(&mut self.watermarks),
            held_bytes: std::mem::take(&mut self.held_bytes),
            held: self.held.clone(),
        });
        self.partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(self.id, partition);
        self.finished = true;
        Ok(())
    }
}

impl Drop for BlockingOutput {
    /// A producer that failed before its end gives back what it held.
    fn drop(&mut self) {
        self.held.fetch_sub(self.held_bytes, Ordering::AcqRel);
    }
}

impl OutputChannel for BlockingOutput {
    /// Never refuses: the element is kept at once.
    fn try_send(&mut self, element: StreamElement) -> Result<Option<StreamElement>> {
        if self.finished {
            return Err(Error::Internal(format!(
                "channel {:?} was sent an element after its end",
                self.id
            )));
        }
        match element {
            StreamElement::Batch(batch) => self.push(batch)?,
            StreamElement::Watermark(watermark) => {
                if let Some(writer) = &mut self.writer {
                    writer.write_pending()?;
                }
                // Watermarks only rise: of several between the same two batches, the last
                // says all the others do.
                match self.watermarks.last_mut() {
                    Some((at, last)) if *at == self.rows => *last = watermark,
                    _ => self.watermarks.push((self.rows, watermark)),
                }
            }
            StreamElement::EndOfInput => self.finish()?,
            StreamElement::Barrier(_) => {
                return Err(Error::Internal(format!(
                    "a checkpoint barrier reached the blocking channel {:?}: jobs with \
                     checkpoints run their exchanges pipelined",
                    self.id
                )));
            }
        }
        Ok(None)
    }
}

struct BlockingInput {
    partition: Arc<Partition>,
    /// For a partition in a file: opened at the first receive.
    reader: Option<SpillReader>,
    /// For a partition in memory: the next batch.
    next_batch: usize,
    rows_read: usize,
    next_watermark: usize,
    ended: bool,
}

impl BlockingInput {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        match &self.partition.rows {
            Rows::Memory(batches) => {
                let batch = batches.get(self.next_batch).cloned();
                self.next_batch += 1;
                Ok(batch)
            }
            Rows::File(file) => {
                if self.reader.is_none() {
                    self.reader = Some(file.read()?);
                }
                self.reader.as_mut().and_then(Iterator::next).transpose()
            }
        }
    }
}

impl InputChannel for BlockingInput {
    fn try_recv(&mut self) -> Result<Option<StreamElement>> {
        if self.ended {
            return Ok(None);
        }
        if let Some(&(at, watermark)) = self.partition.watermarks.get(self.next_watermark)
            && at <= self.rows_read
        {
            self.next_watermark += 1;
            return Ok(Some(StreamElement::Watermark(watermark)));
        }
        if let Some(batch) = self.next_batch()? {
            self.rows_read += batch.num_rows();
            return Ok(Some(StreamElement::Batch(batch)));
        }
        self.ended = true;
        self.reader = None;
        Ok(Some(StreamElement::EndOfInput))
    }

    fn materialized_bytes(&self) -> Option<u64> {
        Some(self.partition.bytes())
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::ids::SubtaskIndex;

    fn batch(values: std::ops::Range<i64>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from_iter_values(values))]).unwrap()
    }

    fn id(edge: u32) -> ChannelId {
        ChannelId {
            edge,
            from: SubtaskIndex(0),
            to: SubtaskIndex(1),
        }
    }

    fn drain(input: &mut dyn InputChannel) -> Vec<String> {
        let mut seen = Vec::new();
        while let Some(element) = input.try_recv().unwrap() {
            seen.push(match element {
                StreamElement::Batch(b) => format!("batch {}", b.num_rows()),
                StreamElement::Watermark(w) => format!("watermark {}", w.0),
                StreamElement::EndOfInput => "end".to_string(),
                StreamElement::Barrier(_) => "barrier".to_string(),
            });
        }
        seen
    }

    #[test]
    fn a_partition_replays_batches_and_watermarks_in_order_as_often_as_asked() {
        // In a file from the start, in memory, and moved to a file after its first batch.
        let first_batch = crate::spill::batch_memory(&batch(0..10));
        for (limit, files) in [(0, 1), (1 << 20, 0), (first_batch, 1)] {
            replays_in_order(limit, files);
        }
    }

    fn replays_in_order(memory_limit: usize, files: usize) {
        let dir = tempfile::tempdir().unwrap();
        let exchange = BlockingExchange::new(dir.path(), 0, memory_limit);
        let waker = SlotWaker::new();
        let mut output = exchange.output(id(0), &waker).unwrap();
        let sent = [
            StreamElement::Watermark(Watermark(1)),
            StreamElement::Batch(batch(0..10)),
            StreamElement::Watermark(Watermark(5)),
            StreamElement::Watermark(Watermark(7)),
            StreamElement::Batch(batch(10..13)),
            StreamElement::Watermark(Watermark(i64::MAX)),
            StreamElement::EndOfInput,
        ];
        for element in sent {
            assert!(output.try_send(element).unwrap().is_none());
        }
        let expected = [
            "watermark 1",
            "batch 10",
            "watermark 7",
            "batch 3",
            &format!("watermark {}", i64::MAX),
            "end",
        ];
        // A stage that runs again reads its input from the start.
        for _ in 0..2 {
            let mut input = exchange.input(id(0), &waker).unwrap();
            assert!(input.materialized_bytes().unwrap() > 0);
            assert_eq!(drain(input.as_mut()), expected, "limit {memory_limit}");
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), files);
        assert_eq!(
            exchange.held.load(Ordering::Acquire) > 0,
            files == 0,
            "memory is counted while held"
        );
        let held = exchange.held.clone();
        drop((output, exchange));
        assert_eq!(held.load(Ordering::Acquire), 0, "and given back");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "the files go with the exchange"
        );
    }

    #[test]
    fn an_empty_partition_just_ends_and_an_unfinished_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let exchange = BlockingExchange::new(dir.path(), 1024, 0);
        let waker = SlotWaker::new();
        let mut output = exchange.output(id(0), &waker).unwrap();
        output.try_send(StreamElement::EndOfInput).unwrap();
        let mut input = exchange.input(id(0), &waker).unwrap();
        assert_eq!(input.materialized_bytes(), Some(0));
        assert_eq!(drain(input.as_mut()), ["end"]);

        let mut unfinished = exchange.output(id(1), &waker).unwrap();
        unfinished
            .try_send(StreamElement::Batch(batch(0..4)))
            .unwrap();
        let error = exchange.input(id(1), &waker).err().unwrap();
        assert!(error.to_string().contains("not complete"), "{error}");
    }

    #[test]
    fn a_producer_that_runs_again_replaces_its_partition() {
        let dir = tempfile::tempdir().unwrap();
        let exchange = BlockingExchange::new(dir.path(), 1024, 0);
        let waker = SlotWaker::new();
        for rows in [5, 8] {
            let mut output = exchange.output(id(0), &waker).unwrap();
            // Small batches are gathered into one.
            output
                .try_send(StreamElement::Batch(batch(0..rows)))
                .unwrap();
            output
                .try_send(StreamElement::Batch(batch(0..rows)))
                .unwrap();
            output.try_send(StreamElement::EndOfInput).unwrap();
        }
        let mut input = exchange.input(id(0), &waker).unwrap();
        assert_eq!(drain(input.as_mut()), ["batch 16", "end"]);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
