//! Blocking (materialised) channels: what a batch job's stages hand to each other.
//!
//! The producer of a blocking channel writes everything it sends into an Arrow IPC file of the
//! spill directory (`io.tmp.dirs`), and the channel's *partition* is complete once the producer
//! sends end-of-input. The consumer runs in a later stage, started only when every partition it
//! reads is complete, and reads the file back from the start. The files outlive the tasks that
//! wrote them: a failed stage runs again from its inputs' files, and a producer that runs again
//! replaces its partitions. They are deleted when the exchange is dropped (the job ends).
//!
//! Watermarks between batches are kept beside the file with their position, so the consumer
//! sees the elements in the order they were sent. Checkpoint barriers never reach a blocking
//! channel: a job with checkpointing runs pipelined.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::{ChannelId, ExchangeFactory, InputChannel, OutputChannel, SlotWaker};
use crate::element::{StreamElement, Watermark};
use crate::spill::{SpillFile, SpillReader, SpillWriter};
use crate::{Error, Result};

/// A finished partition: the batches of one channel, and the watermarks sent between them.
#[derive(Debug)]
struct Partition {
    /// `None` when the producer sent no rows.
    file: Option<SpillFile>,
    /// Each watermark with the number of batches written before it.
    watermarks: Vec<(usize, Watermark)>,
}

impl Partition {
    fn bytes(&self) -> u64 {
        self.file.as_ref().map_or(0, SpillFile::bytes)
    }
}

type Partitions = Arc<Mutex<HashMap<ChannelId, Arc<Partition>>>>;

/// Creates blocking channels whose partitions are files in `dir`. The lock guards the map of
/// finished partitions, touched once per channel when it is opened or finished.
pub struct BlockingExchange {
    dir: PathBuf,
    /// Batches smaller than this many rows are gathered into one before they are written.
    gather_rows: usize,
    partitions: Partitions,
}

impl BlockingExchange {
    pub fn new(dir: impl Into<PathBuf>, gather_rows: usize) -> Self {
        BlockingExchange {
            dir: dir.into(),
            gather_rows,
            partitions: Partitions::default(),
        }
    }

    /// Bytes on disk of every finished partition (the exchange's share of the spill directory).
    pub fn bytes(&self) -> u64 {
        self.partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|p| p.bytes())
            .sum()
    }
}

impl ExchangeFactory for BlockingExchange {
    fn output(&self, id: ChannelId, _producer: &SlotWaker) -> Result<Box<dyn OutputChannel>> {
        Ok(Box::new(BlockingOutput {
            id,
            dir: self.dir.clone(),
            gather_rows: self.gather_rows,
            writer: None,
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
            batches_read: 0,
            next_watermark: 0,
            ended: false,
        }))
    }
}

struct BlockingOutput {
    id: ChannelId,
    dir: PathBuf,
    gather_rows: usize,
    /// Opened with the first batch, whose schema the file takes.
    writer: Option<SpillWriter>,
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

    fn finish(&mut self) -> Result<()> {
        let file = self.writer.take().map(SpillWriter::finish).transpose()?;
        let partition = Arc::new(Partition {
            file,
            watermarks: std::mem::take(&mut self.watermarks),
        });
        self.partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(self.id, partition);
        self.finished = true;
        Ok(())
    }
}

impl OutputChannel for BlockingOutput {
    /// Never refuses: the element goes to the file (or beside it) at once.
    fn try_send(&mut self, element: StreamElement) -> Result<Option<StreamElement>> {
        if self.finished {
            return Err(Error::Internal(format!(
                "channel {:?} was sent an element after its end",
                self.id
            )));
        }
        match element {
            StreamElement::Batch(batch) => {
                if self.writer.is_none() {
                    let writer = SpillWriter::create(&self.dir, &self.what(), &batch.schema())?
                        .coalescing(self.gather_rows);
                    self.writer = Some(writer);
                }
                if let Some(writer) = &mut self.writer {
                    writer.write(&batch)?;
                }
            }
            StreamElement::Watermark(watermark) => {
                let position = match &mut self.writer {
                    Some(writer) => {
                        writer.write_pending()?;
                        writer.batches()
                    }
                    None => 0,
                };
                // Watermarks only rise: of several between the same two batches, the last
                // says all the others do.
                match self.watermarks.last_mut() {
                    Some((at, last)) if *at == position => *last = watermark,
                    _ => self.watermarks.push((position, watermark)),
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
    /// Opened at the first receive.
    reader: Option<SpillReader>,
    batches_read: usize,
    next_watermark: usize,
    ended: bool,
}

impl InputChannel for BlockingInput {
    fn try_recv(&mut self) -> Result<Option<StreamElement>> {
        if self.ended {
            return Ok(None);
        }
        if let Some(&(at, watermark)) = self.partition.watermarks.get(self.next_watermark)
            && at == self.batches_read
        {
            self.next_watermark += 1;
            return Ok(Some(StreamElement::Watermark(watermark)));
        }
        if let Some(file) = &self.partition.file {
            if self.reader.is_none() {
                self.reader = Some(file.read()?);
            }
            if let Some(batch) = self.reader.as_mut().and_then(Iterator::next) {
                self.batches_read += 1;
                return Ok(Some(StreamElement::Batch(batch?)));
            }
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
        let dir = tempfile::tempdir().unwrap();
        let exchange = BlockingExchange::new(dir.path(), 0);
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
            assert_eq!(drain(input.as_mut()), expected);
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        drop((output, exchange));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "the files go with the exchange"
        );
    }

    #[test]
    fn an_empty_partition_just_ends_and_an_unfinished_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let exchange = BlockingExchange::new(dir.path(), 1024);
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
        let exchange = BlockingExchange::new(dir.path(), 1024);
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
