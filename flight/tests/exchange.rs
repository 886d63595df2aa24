//! Two TaskManagers' exchanges in one process, talking real gRPC over loopback TCP.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use sluice_engine::element::{CheckpointBarrier, SnapshotKind, StreamElement, Watermark};
use sluice_engine::ids::{AttemptNumber, CheckpointId, JobId, SubtaskIndex, VertexId};
use sluice_engine::runtime::exchange::{
    ChannelId, ExchangeFactory, InputChannel, OutputChannel, SlotWaker,
};
use sluice_flight::codec::Compression;
use sluice_flight::{
    ExchangeConfig, ExchangePlacement, ExchangeServer, FlightExchange, TaskManagerId,
};

const DEADLINE: Duration = Duration::from_secs(20);

fn tm(name: &str) -> TaskManagerId {
    TaskManagerId(name.to_string())
}

/// One edge 0 → 1; subtask 0 of both vertices on TaskManager "a", subtask 1 of the target on
/// "b": channel (0 → 0) is local to "a", channel (0 → 1) crosses from "a" to "b".
fn placement(a: &str, b: &str) -> ExchangePlacement {
    ExchangePlacement::from_edges(vec![(VertexId(0), VertexId(1))])
        .with_subtask(VertexId(0), SubtaskIndex(0), tm("a"))
        .with_subtask(VertexId(1), SubtaskIndex(0), tm("a"))
        .with_subtask(VertexId(1), SubtaskIndex(1), tm("b"))
        .with_task_manager(tm("a"), a)
        .with_task_manager(tm("b"), b)
}

fn channel(to: u32) -> ChannelId {
    ChannelId {
        edge: 0,
        from: SubtaskIndex(0),
        to: SubtaskIndex(to),
    }
}

struct Cluster {
    a_server: Arc<ExchangeServer>,
    b_server: Arc<ExchangeServer>,
    a: FlightExchange,
    b: FlightExchange,
}

fn cluster(config: ExchangeConfig) -> Cluster {
    let a_server = ExchangeServer::start("127.0.0.1:0", config.clone()).unwrap();
    let b_server = ExchangeServer::start("127.0.0.1:0", config).unwrap();
    let placement = placement(
        &a_server.address().to_string(),
        &b_server.address().to_string(),
    );
    let job = JobId("0123456789abcdef0123456789abcdef".into());
    let a = FlightExchange::new(
        a_server.clone(),
        job.clone(),
        AttemptNumber(0),
        tm("a"),
        placement.clone(),
    );
    let b = FlightExchange::new(b_server.clone(), job, AttemptNumber(0), tm("b"), placement);
    Cluster {
        a_server,
        b_server,
        a,
        b,
    }
}

fn batch(rows: usize, offset: i64) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("price", DataType::Float64, false),
        Field::new("name", DataType::Utf8, false),
    ]));
    let ids: Vec<i64> = (offset..offset + rows as i64).collect();
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(Float64Array::from_iter_values(
                ids.iter().map(|i| *i as f64 / 4.0),
            )),
            Arc::new(StringArray::from_iter_values(
                ids.iter().map(|i| format!("bidder-{}", i % 97)),
            )),
        ],
    )
    .unwrap()
}

/// Offers `element` until the channel takes it, parking between tries as a slot thread does.
fn send(output: &mut dyn OutputChannel, mut element: StreamElement) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        match output.try_send(element)? {
            None => return Ok(()),
            Some(back) => element = back,
        }
        anyhow::ensure!(start.elapsed() < DEADLINE, "channel stayed full");
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

fn receive(input: &mut dyn InputChannel) -> anyhow::Result<StreamElement> {
    let start = Instant::now();
    loop {
        if let Some(element) = input.try_recv()? {
            return Ok(element);
        }
        anyhow::ensure!(start.elapsed() < DEADLINE, "no element arrived");
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

fn elements() -> Vec<StreamElement> {
    let mut elements = vec![StreamElement::Watermark(Watermark(0))];
    for i in 0..30 {
        elements.push(StreamElement::Batch(batch(1000 + i, i as i64 * 10_000)));
        if i % 5 == 4 {
            elements.push(StreamElement::Watermark(Watermark(i as i64 * 1000)));
        }
        if i == 17 {
            elements.push(StreamElement::Barrier(CheckpointBarrier {
                id: CheckpointId(3),
                timestamp_ms: 1_764_000_000_000,
                kind: SnapshotKind::Checkpoint,
            }));
        }
    }
    elements.push(StreamElement::Watermark(Watermark::MAX));
    elements.push(StreamElement::EndOfInput);
    elements
}

fn assert_same(sent: &[StreamElement], received: &[StreamElement]) {
    assert_eq!(sent.len(), received.len());
    for (i, (s, r)) in sent.iter().zip(received).enumerate() {
        match (s, r) {
            (StreamElement::Batch(a), StreamElement::Batch(b)) => assert_eq!(a, b, "element {i}"),
            (StreamElement::Watermark(a), StreamElement::Watermark(b)) => {
                assert_eq!(a, b, "element {i}")
            }
            (StreamElement::Barrier(a), StreamElement::Barrier(b)) => {
                assert_eq!(a, b, "element {i}")
            }
            (StreamElement::EndOfInput, StreamElement::EndOfInput) => {}
            _ => panic!("element {i}: sent {s:?}, received {r:?}"),
        }
    }
}

/// Moves `elements()` from a producer thread to a consumer thread over channel `to`.
fn move_stream(cluster: &Cluster, to: u32) {
    let consumer_exchange: &FlightExchange = if to == 0 { &cluster.a } else { &cluster.b };
    let sent = elements();
    let (received, ()) = std::thread::scope(|scope| {
        let consumer = scope.spawn(|| {
            let waker = SlotWaker::new();
            waker.bind_current();
            let mut input = consumer_exchange.input(channel(to), &waker).unwrap();
            let mut received = Vec::new();
            loop {
                let element = receive(input.as_mut()).unwrap();
                let end = matches!(element, StreamElement::EndOfInput);
                received.push(element);
                if end {
                    break;
                }
            }
            if to == 1 {
                // Nothing follows end-of-input on a remote channel. (An in-process channel
                // reports its dropped sender; the engine stops reading at end-of-input.)
                std::thread::sleep(Duration::from_millis(100));
                assert!(input.try_recv().unwrap().is_none());
            }
            received
        });
        let producer = scope.spawn(|| {
            let waker = SlotWaker::new();
            waker.bind_current();
            let mut output = cluster.a.output(channel(to), &waker).unwrap();
            if to == 1 {
                // An empty batch (all rows filtered out) is accepted and never arrives.
                send(output.as_mut(), StreamElement::Batch(batch(0, 0))).unwrap();
            }
            for element in elements() {
                send(output.as_mut(), element).unwrap();
            }
        });
        producer.join().unwrap();
        (consumer.join().unwrap(), ())
    });
    assert_same(&sent, &received);
}

#[test]
fn remote_channel_carries_batches_and_control_elements_in_order() {
    let cluster = cluster(ExchangeConfig::default().with_credits_per_channel(4));
    move_stream(&cluster, 1);
}

#[test]
fn remote_channel_with_lz4_and_zstd() {
    for compression in [Compression::Lz4Frame, Compression::Zstd] {
        let cluster = cluster(
            ExchangeConfig::default()
                .with_credits_per_channel(2)
                .with_compression(compression),
        );
        move_stream(&cluster, 1);
    }
}

#[test]
fn channel_inside_one_task_manager_stays_in_process() {
    let cluster = cluster(ExchangeConfig::default());
    move_stream(&cluster, 0);
}

#[test]
fn ends_on_the_wrong_task_manager_are_refused() {
    let cluster = cluster(ExchangeConfig::default());
    let waker = SlotWaker::new();
    let error = cluster
        .b
        .output(channel(1), &waker)
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("which TaskManager a hosts"), "{error}");
    let error = cluster
        .a
        .input(channel(1), &waker)
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("which TaskManager b hosts"), "{error}");
}

#[test]
fn a_consumer_that_does_not_read_stops_the_producer_after_its_credit() {
    let credits = 3;
    let cluster = cluster(ExchangeConfig::default().with_credits_per_channel(credits));
    let waker = SlotWaker::new();
    waker.bind_current();
    let mut output = cluster.a.output(channel(1), &waker).unwrap();
    let mut input = cluster.b.input(channel(1), &waker).unwrap();

    for i in 0..credits {
        send(
            output.as_mut(),
            StreamElement::Batch(batch(100, i as i64 * 100)),
        )
        .unwrap();
    }
    // The credit is spent: the channel stays full while nobody reads.
    let mut pending = StreamElement::Watermark(Watermark(42));
    for _ in 0..10 {
        pending = output
            .try_send(pending)
            .unwrap()
            .expect("a channel without credit must report full");
        std::thread::sleep(Duration::from_millis(30));
    }

    // Reading one element releases one credit.
    let first = receive(input.as_mut()).unwrap();
    assert!(matches!(&first, StreamElement::Batch(b) if b.num_rows() == 100));
    send(output.as_mut(), pending).unwrap();
    let next = output
        .try_send(StreamElement::EndOfInput)
        .unwrap()
        .expect("exactly one credit came back");

    // Drain: everything arrives in order, and the producer finishes.
    let mut received = vec![first];
    let mut pending = Some(next);
    while received.len() < credits as usize + 2 {
        if let Some(element) = pending.take() {
            pending = output.try_send(element).unwrap();
        }
        if let Some(element) = input.try_recv().unwrap() {
            received.push(element);
        } else {
            std::thread::park_timeout(Duration::from_millis(20));
        }
    }
    assert!(pending.is_none());
    let ids: Vec<i64> = received[..credits as usize]
        .iter()
        .map(|e| match e {
            StreamElement::Batch(b) => b
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .value(0),
            other => panic!("expected a batch, got {other:?}"),
        })
        .collect();
    assert_eq!(ids, vec![0, 100, 200]);
    assert!(matches!(
        received[credits as usize],
        StreamElement::Watermark(Watermark(42))
    ));
    assert!(matches!(
        received[credits as usize + 1],
        StreamElement::EndOfInput
    ));

    // Both ends counted the traffic: the stalls while the consumer did not read, the credits
    // (the first grant and one per element taken), the same bytes out as in.
    let sent = cluster.a_server.metrics();
    assert!(sent.credit_stalls >= 10, "{sent:?}");
    assert!(sent.credits_granted > u64::from(credits), "{sent:?}");
    assert!(sent.bytes_sent > 300 * 8, "{sent:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while cluster.b_server.metrics().bytes_received < sent.bytes_sent
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let got = cluster.b_server.metrics();
    assert_eq!(got.bytes_received, sent.bytes_sent, "{got:?} {sent:?}");
    assert_eq!(got.messages_received, sent.messages_sent);
}

#[test]
fn a_killed_receiver_fails_the_producer_with_its_address() {
    let cluster = cluster(ExchangeConfig::default().with_credits_per_channel(2));
    let b_address = cluster.b_server.address().to_string();
    let waker = SlotWaker::new();
    waker.bind_current();
    let mut output = cluster.a.output(channel(1), &waker).unwrap();
    let mut input = cluster.b.input(channel(1), &waker).unwrap();
    send(output.as_mut(), StreamElement::Batch(batch(10, 0))).unwrap();
    assert!(matches!(
        receive(input.as_mut()).unwrap(),
        StreamElement::Batch(_)
    ));

    // Kill TaskManager b: its runtime stops and its connections close.
    let Cluster {
        a_server,
        b_server,
        a,
        b,
    } = cluster;
    drop(input);
    drop(b);
    drop(b_server);

    let start = Instant::now();
    let error = loop {
        match output.try_send(StreamElement::Batch(batch(10, 0))) {
            Err(error) => break error,
            Ok(_) => {
                assert!(
                    start.elapsed() < DEADLINE,
                    "the producer never saw the dead peer"
                );
                std::thread::park_timeout(Duration::from_millis(20));
            }
        }
    };
    let message = error.to_string();
    assert!(message.contains(&b_address), "{message}");
    assert!(error.is_retryable(), "{message}");
    drop((a, a_server));
}

#[test]
fn an_unreachable_receiver_fails_the_producer_with_its_address() {
    // A port nobody listens on.
    let free = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = free.local_addr().unwrap().to_string();
    drop(free);
    let server = ExchangeServer::start("127.0.0.1:0", ExchangeConfig::default()).unwrap();
    let exchange = FlightExchange::new(
        server.clone(),
        JobId("ff".into()),
        AttemptNumber(1),
        tm("a"),
        placement(&server.address().to_string(), &dead),
    );
    let waker = SlotWaker::new();
    waker.bind_current();
    let mut output = exchange.output(channel(1), &waker).unwrap();
    let start = Instant::now();
    let error = loop {
        match output.try_send(StreamElement::Watermark(Watermark(1))) {
            Err(error) => break error,
            Ok(Some(_)) => {
                assert!(start.elapsed() < DEADLINE, "the producer never failed");
                std::thread::park_timeout(Duration::from_millis(20));
            }
            Ok(None) => panic!("no credit can come from a peer that is not there"),
        }
    };
    let message = error.to_string();
    assert!(message.contains(&dead), "{message}");
}

#[test]
fn a_producer_that_dies_fails_the_consumer() {
    let cluster = cluster(ExchangeConfig::default());
    let waker = SlotWaker::new();
    waker.bind_current();
    let mut output = cluster.a.output(channel(1), &waker).unwrap();
    let mut input = cluster.b.input(channel(1), &waker).unwrap();
    send(output.as_mut(), StreamElement::Watermark(Watermark(5))).unwrap();
    assert!(matches!(
        receive(input.as_mut()).unwrap(),
        StreamElement::Watermark(Watermark(5))
    ));
    let Cluster {
        a_server,
        b_server,
        a,
        b,
    } = cluster;
    let a_address = a_server.address().to_string();
    // The producing TaskManager goes away before end-of-input.
    drop(output);
    drop(a);
    drop(a_server);
    let start = Instant::now();
    let error = loop {
        match input.try_recv() {
            Err(error) => break error,
            Ok(Some(element)) => panic!("unexpected {element:?}"),
            Ok(None) => {
                assert!(
                    start.elapsed() < DEADLINE,
                    "the consumer never saw the dead producer"
                );
                std::thread::park_timeout(Duration::from_millis(20));
            }
        }
    };
    let message = error.to_string();
    assert!(
        message.contains("upstream subtask 0 of edge 0"),
        "{message}"
    );
    assert!(message.contains(&a_address), "{message}");
    drop((b, b_server));
}

#[tokio::test]
async fn a_server_starts_and_stops_inside_async_code() {
    // A TaskManager process drives its control plane from async code.
    let server = ExchangeServer::start("127.0.0.1:0", ExchangeConfig::default()).unwrap();
    let address = server.address();
    tokio::net::TcpStream::connect(address).await.unwrap();
    drop(server);
    let start = Instant::now();
    while tokio::net::TcpStream::connect(address).await.is_ok() {
        assert!(start.elapsed() < DEADLINE, "the server kept listening");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn a_blocked_channel_does_not_stall_another_channel_to_the_same_peer() {
    // Barrier alignment stops reading one channel until the barrier arrived on the others;
    // those must keep flowing although both share one connection.
    let config = ExchangeConfig::default().with_credits_per_channel(2);
    let a_server = ExchangeServer::start("127.0.0.1:0", config.clone()).unwrap();
    let b_server = ExchangeServer::start("127.0.0.1:0", config).unwrap();
    let placement = placement(
        &a_server.address().to_string(),
        &b_server.address().to_string(),
    )
    .with_subtask(VertexId(1), SubtaskIndex(2), tm("b"));
    let job = JobId("0123456789abcdef0123456789abcdef".into());
    let a = FlightExchange::new(
        a_server.clone(),
        job.clone(),
        AttemptNumber(0),
        tm("a"),
        placement.clone(),
    );
    let b = FlightExchange::new(b_server.clone(), job, AttemptNumber(0), tm("b"), placement);
    let waker = SlotWaker::new();
    waker.bind_current();
    let mut blocked_out = a.output(channel(1), &waker).unwrap();
    let mut flowing_out = a.output(channel(2), &waker).unwrap();
    let _blocked_in = b.input(channel(1), &waker).unwrap();
    let mut flowing_in = b.input(channel(2), &waker).unwrap();

    // Fill the blocked channel: its credit is spent and nobody reads it.
    let big = batch(50_000, 0);
    send(blocked_out.as_mut(), StreamElement::Batch(big.clone())).unwrap();
    send(blocked_out.as_mut(), StreamElement::Batch(big.clone())).unwrap();
    assert!(
        blocked_out
            .try_send(StreamElement::Batch(big.clone()))
            .unwrap()
            .is_some()
    );

    // Many megabytes still pass on the other channel.
    let total = 40;
    let mut received = 0;
    let mut next = 0;
    let mut pending: Option<StreamElement> = None;
    let start = Instant::now();
    while received < total {
        assert!(start.elapsed() < DEADLINE, "the second channel stalled");
        if pending.is_none() && next < total {
            pending = Some(StreamElement::Batch(big.clone()));
            next += 1;
        }
        if let Some(element) = pending.take() {
            pending = flowing_out.try_send(element).unwrap();
        }
        match flowing_in.try_recv().unwrap() {
            Some(StreamElement::Batch(b)) => {
                assert_eq!(b.num_rows(), 50_000);
                received += 1;
            }
            Some(other) => panic!("unexpected {other:?}"),
            None => std::thread::park_timeout(Duration::from_millis(5)),
        }
    }
}

#[test]
fn releasing_an_ended_job_fails_its_half_open_channels_and_refuses_late_ones() {
    let cluster = cluster(ExchangeConfig::default().with_credits_per_channel(2));
    let waker = SlotWaker::new();
    waker.bind_current();
    // The producer on a opens its stream to b, but b's consumer never starts (its job ended
    // there first): b buffers what the credit allows.
    let mut output = cluster.a.output(channel(1), &waker).unwrap();
    send(output.as_mut(), StreamElement::Batch(batch(10, 0))).unwrap();
    let job = JobId("0123456789abcdef0123456789abcdef".into());
    let start = Instant::now();
    let mut failed = 0;
    // The stream reaches b asynchronously; release once it is registered there.
    while failed == 0 {
        assert!(start.elapsed() < DEADLINE, "the stream never reached b");
        std::thread::sleep(Duration::from_millis(20));
        failed = cluster.b_server.release_job(&job, AttemptNumber(1));
        assert_eq!(failed, 0, "another attempt's channels are not touched");
        failed = cluster.b_server.release_job(&job, AttemptNumber(0));
    }
    assert_eq!(failed, 1);

    // The producer sees its channel fail, with the reason.
    let error = loop {
        match output.try_send(StreamElement::Batch(batch(10, 0))) {
            Err(error) => break error,
            Ok(_) => {
                assert!(
                    start.elapsed() < DEADLINE,
                    "the producer never saw the release"
                );
                std::thread::park_timeout(Duration::from_millis(20));
            }
        }
    };
    let message = error.to_string();
    assert!(
        message.contains("ended on the receiving TaskManager"),
        "{message}"
    );

    // A consumer of the released attempt is refused, naming the channel.
    let error = cluster
        .b
        .input(channel(1), &waker)
        .err()
        .expect("the attempt ended on b")
        .to_string();
    assert!(
        error.contains("edge 0, subtask 0 -> 1") && error.contains("already ended"),
        "{error}"
    );
}
