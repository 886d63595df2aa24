//! The `s3://` checkpoint store: the engine's [`StateStore`] over `object_store`'s S3 client,
//! for AWS S3 and S3-compatible servers.
//!
//! [`S3Stores`] is what a process registers in its [`StateStores`] (see
//! [`state_stores`]); it opens one [`S3Store`] per job (or restore), which keeps one client
//! per bucket. Settings come from [`S3Config`] (`s3.*` options), unset ones from the standard
//! `AWS_*` environment variables; an `http://` endpoint allows plain HTTP.
//!
//! The engine calls stores synchronously (checkpoint writer threads, `spawn_blocking`). Each
//! call runs its request on this module's own small tokio runtime (two worker threads,
//! started on first use) and waits for it; called from a worker of a multi-threaded tokio
//! runtime, the wait is announced with `block_in_place`, so the caller's runtime moves its
//! other tasks elsewhere. Nothing here calls `block_on` inside an async context.
//!
//! Every file is one PUT (S3 makes a single PUT atomic, so `_metadata` needs no rename). A
//! "directory" is a key prefix: listing uses the `/` delimiter, deleting one lists its keys
//! and deletes them in bulk. Requests are retried a few times on transient failures
//! ([`RETRY`]); an error names the operation and the URL, e.g.
//! `checkpoint storage: PUT s3://bucket/chk/job/chk-3/_metadata: …`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use sluice_engine::checkpoint::{
    EntryKind, ObjectStores, ObjectUrl, S3Config, StatePath, StateStore, StateStores, StoreEntry,
};
use sluice_engine::{Error, Result};

/// Retries of one request: a few, quickly. A store that stays unreachable fails the
/// checkpoint (the job goes on and tries the next one) or the restore (the restart strategy
/// decides) within about 10 s rather than the client's default of minutes.
const RETRY: RetryConfig = RetryConfig {
    backoff: BackoffConfig {
        init_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(2),
        base: 2.0,
    },
    max_retries: 3,
    retry_timeout: Duration::from_secs(10),
};

/// The stores of a process: local directories, and `s3://` through [`S3Stores`], opened
/// with `s3` (unset fields come from the `AWS_*` environment variables).
pub fn state_stores(s3: S3Config) -> StateStores {
    StateStores::default()
        .with_objects(Arc::new(S3Stores::default()))
        .with_s3(s3)
}

/// Opens [`S3Store`]s; registered in a process's [`StateStores`]. Cheap to create: its
/// runtime starts with the first store it opens.
#[derive(Debug, Default)]
pub struct S3Stores {
    runtime: Arc<OnceLock<IoRuntime>>,
}

impl ObjectStores for S3Stores {
    fn open(&self, url: &ObjectUrl, config: &S3Config) -> Result<Arc<dyn StateStore>> {
        if url.scheme() != "s3" {
            return Err(Error::Internal(format!(
                "the S3 store was asked to open {url} (a bug)"
            )));
        }
        if self.runtime.get().is_none() {
            let runtime = IoRuntime::start().map_err(|e| Error::Storage {
                operation: "start the S3 client runtime for",
                location: url.to_string(),
                message: e.to_string(),
                retryable: false,
            })?;
            // Another thread may have won the race: its runtime is kept, this one stops.
            let _ = self.runtime.set(runtime);
        }
        let store = S3Store {
            runtime: self.runtime.clone(),
            config: config.clone(),
            clients: Mutex::new(HashMap::new()),
        };
        // Builds the bucket's client now, so that bad settings fail the job at its start.
        store.client(url)?;
        Ok(Arc::new(store))
    }
}

/// A tokio runtime of its own for the S3 requests; stopped without waiting when dropped, so
/// it may be dropped anywhere (even on another runtime's worker).
#[derive(Debug)]
struct IoRuntime(Option<tokio::runtime::Runtime>);

impl IoRuntime {
    fn start() -> std::io::Result<Self> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sluice-s3")
            .enable_all()
            .build()
            .map(|runtime| IoRuntime(Some(runtime)))
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.0
            .as_ref()
            .expect("the runtime is only taken out when dropped")
            .handle()
    }
}

impl Drop for IoRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Checkpoint files in S3 buckets (any bucket; one client each).
pub struct S3Store {
    runtime: Arc<OnceLock<IoRuntime>>,
    config: S3Config,
    clients: Mutex<HashMap<String, Arc<AmazonS3>>>,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `S3Config`'s Debug leaves the secret key out.
        f.debug_struct("S3Store")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The bucket and key of an `s3://` path, or an internal error for a local one.
fn object_url(path: &StatePath) -> Result<&ObjectUrl> {
    match path {
        StatePath::Object(url) => Ok(url),
        StatePath::Local(local) => Err(Error::Internal(format!(
            "the S3 store was handed the local path {} (a bug)",
            local.display()
        ))),
    }
}

/// An error of `operation` on `url`, with the client's causes.
fn storage_error(operation: &'static str, url: &ObjectUrl, error: &object_store::Error) -> Error {
    use object_store::Error as E;
    let retryable = matches!(error, E::Generic { .. } | E::JoinError { .. });
    Error::Storage {
        operation,
        location: url.to_string(),
        message: causes(error),
        retryable,
    }
}

/// An error and its sources, each once: `a: b: c`.
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}

impl S3Store {
    /// The client of `url`'s bucket, built on first use.
    fn client(&self, url: &ObjectUrl) -> Result<Arc<AmazonS3>> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = clients.get(url.bucket()) {
            return Ok(client.clone());
        }
        let client = Arc::new(self.build(url.bucket()).map_err(|e| Error::Storage {
            operation: "configure the S3 client for",
            location: url.to_string(),
            message: causes(&e),
            retryable: false,
        })?);
        clients.insert(url.bucket().to_string(), client.clone());
        Ok(client)
    }

    fn build(&self, bucket: &str) -> object_store::Result<AmazonS3> {
        let config = &self.config;
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(region) = &config.region {
            builder = builder.with_region(region);
        }
        if let Some(key) = &config.access_key {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &config.secret_key {
            builder = builder.with_secret_access_key(secret);
        }
        let endpoint = config
            .endpoint
            .clone()
            .or_else(|| builder.get_config_value(&AmazonS3ConfigKey::Endpoint));
        let path_style = config.path_style_access.unwrap_or(false);
        if let Some(endpoint) = endpoint {
            if endpoint.to_ascii_lowercase().starts_with("http://") {
                builder = builder.with_allow_http(true);
            }
            // Virtual-hosted-style requests go to `bucket.host`: the client expects the
            // endpoint to name the bucket then.
            let endpoint = if path_style {
                endpoint
            } else {
                match endpoint.split_once("://") {
                    Some((scheme, host)) => format!("{scheme}://{bucket}.{host}"),
                    None => endpoint,
                }
            };
            builder = builder.with_endpoint(endpoint);
        }
        builder
            .with_virtual_hosted_style_request(!path_style)
            .with_retry(RETRY)
            .build()
    }

    /// Runs `request` on the store's runtime and waits for its result (see the module docs).
    fn run<T: Send + 'static>(
        &self,
        operation: &'static str,
        url: &ObjectUrl,
        request: impl Future<Output = T> + Send + 'static,
    ) -> Result<T> {
        let runtime = self.runtime.get().ok_or_else(|| {
            Error::Internal("an S3 store without its runtime (a bug)".to_string())
        })?;
        let task = runtime.handle().spawn(request);
        let wait = || futures::executor::block_on(task);
        let joined = match tokio::runtime::Handle::try_current() {
            Ok(current)
                if current.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread =>
            {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        };
        joined.map_err(|e| Error::Storage {
            operation,
            location: url.to_string(),
            message: format!("the request task ended: {e}"),
            retryable: true,
        })
    }
}

/// The object key of `url` (a file, or a directory prefix).
fn key(url: &ObjectUrl) -> ObjectPath {
    ObjectPath::from(url.key())
}

impl StateStore for S3Store {
    fn put(&self, path: &StatePath, bytes: Vec<u8>) -> Result<()> {
        let url = object_url(path)?;
        let client = self.client(url)?;
        let location = key(url);
        self.run("PUT", url, async move {
            client.put(&location, PutPayload::from(bytes)).await
        })?
        .map(drop)
        .map_err(|e| storage_error("PUT", url, &e))
    }

    fn publish(&self, path: &StatePath, bytes: Vec<u8>) -> Result<()> {
        // One PUT is atomic on S3: readers see the whole object or none.
        self.put(path, bytes)
    }

    fn get(&self, path: &StatePath) -> Result<Vec<u8>> {
        let url = object_url(path)?;
        let client = self.client(url)?;
        let location = key(url);
        let bytes = self
            .run("GET", url, async move {
                client.get(&location).await?.bytes().await
            })?
            .map_err(|e| storage_error("GET", url, &e))?;
        Ok(Vec::from(bytes))
    }

    fn size(&self, path: &StatePath) -> Result<Option<u64>> {
        let url = object_url(path)?;
        let client = self.client(url)?;
        let location = key(url);
        match self.run("HEAD", url, async move { client.head(&location).await })? {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(storage_error("HEAD", url, &e)),
        }
    }

    fn list(&self, dir: &StatePath) -> Result<Vec<StoreEntry>> {
        let url = object_url(dir)?;
        let client = self.client(url)?;
        let prefix = key(url);
        let listed = self
            .run("LIST", url, async move {
                let prefix = (!prefix.as_ref().is_empty()).then_some(prefix);
                client.list_with_delimiter(prefix.as_ref()).await
            })?
            .map_err(|e| storage_error("LIST", url, &e))?;
        let directories = listed.common_prefixes.iter().filter_map(|p| {
            p.filename().map(|name| StoreEntry {
                name: name.to_string(),
                kind: EntryKind::Directory,
            })
        });
        let files = listed.objects.iter().filter_map(|o| {
            o.location.filename().map(|name| StoreEntry {
                name: name.to_string(),
                kind: EntryKind::File,
            })
        });
        Ok(directories.chain(files).collect())
    }

    fn delete(&self, path: &StatePath) -> Result<()> {
        let url = object_url(path)?;
        let client = self.client(url)?;
        let location = key(url);
        match self.run("DELETE", url, async move { client.delete(&location).await })? {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(storage_error("DELETE", url, &e)),
        }
    }

    fn delete_dir(&self, dir: &StatePath) -> Result<()> {
        let url = object_url(dir)?;
        if url.key().is_empty() {
            return Err(Error::Internal(format!(
                "refusing to delete the whole bucket {url} (a bug)"
            )));
        }
        let client = self.client(url)?;
        let prefix = key(url);
        self.run("DELETE", url, async move {
            let keys = client
                .list(Some(&prefix))
                .map_ok(|meta| meta.location)
                .boxed();
            client
                .delete_stream(keys)
                .try_for_each(|_| async { Ok(()) })
                .await
        })?
        .or_else(|e| match e {
            object_store::Error::NotFound { .. } => Ok(()),
            e => Err(e),
        })
        .map_err(|e| storage_error("DELETE", url, &e))
    }

    fn copy(&self, from: &StatePath, to: &StatePath) -> Result<()> {
        let (from_url, to_url) = (object_url(from)?, object_url(to)?);
        if from_url.bucket() != to_url.bucket() {
            return self.put(to, self.get(from)?);
        }
        let client = self.client(from_url)?;
        let (source, target) = (key(from_url), key(to_url));
        self.run("COPY", from_url, async move {
            client.copy(&source, &target).await
        })?
        .map_err(|e| storage_error("COPY", from_url, &e))
    }
}

#[cfg(test)]
#[allow(
    dead_code,
    reason = "the harness is shared with the test binaries, which use all of it"
)]
#[path = "../../tests/support/moto.rs"]
mod moto;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch, UInt32Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use sluice_engine::checkpoint::{
        CheckpointMetadata, CheckpointStorage, StatePath, StateStores, SubtaskSnapshot,
    };
    use sluice_engine::ids::{CheckpointId, JobId};
    use sluice_engine::state::{KeyGroupRange, SnapshotTable, StateSnapshot, TableSlices};

    use super::moto::{ACCESS_KEY, Moto, SECRET_KEY};
    use super::*;

    fn config(endpoint: &str) -> S3Config {
        S3Config {
            endpoint: Some(endpoint.to_string()),
            access_key: Some(ACCESS_KEY.into()),
            secret_key: Some(SECRET_KEY.into()),
            region: None,
            path_style_access: Some(true),
        }
    }

    fn path(text: &str) -> StatePath {
        StatePath::parse(text).unwrap()
    }

    /// A moto server with bucket `bkt`, and the stores that reach it.
    fn server() -> (tempfile::TempDir, Moto, StateStores) {
        let dir = tempfile::tempdir().unwrap();
        let moto = Moto::start(dir.path());
        moto.create_bucket("bkt");
        let stores = state_stores(config(&moto.endpoint()));
        (dir, moto, stores)
    }

    fn names(store: &dyn StateStore, dir: &str) -> Vec<(String, EntryKind)> {
        let mut names: Vec<_> = store
            .list(&path(dir))
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.kind))
            .collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        names
    }

    #[test]
    fn files_are_put_listed_copied_and_deleted_in_a_real_s3_server() {
        let (_dir, _moto, stores) = server();
        let store = stores.store_for(&path("s3://bkt/root")).unwrap();
        store
            .put(&path("s3://bkt/root/a/one"), b"1".to_vec())
            .unwrap();
        store
            .publish(&path("s3://bkt/root/a/two"), b"22".to_vec())
            .unwrap();
        store
            .put(&path("s3://bkt/root/top"), b"t".to_vec())
            .unwrap();
        assert_eq!(store.get(&path("s3://bkt/root/a/two")).unwrap(), b"22");
        assert_eq!(store.size(&path("s3://bkt/root/a/two")).unwrap(), Some(2));
        assert_eq!(store.size(&path("s3://bkt/root/a/none")).unwrap(), None);
        assert_eq!(
            store.size(&path("s3://bkt/root/a")).unwrap(),
            None,
            "a prefix"
        );
        assert_eq!(
            names(&*store, "s3://bkt/root"),
            vec![
                ("a".to_string(), EntryKind::Directory),
                ("top".to_string(), EntryKind::File)
            ]
        );
        assert!(store.list(&path("s3://bkt/nothing")).unwrap().is_empty());
        let missing = store.get(&path("s3://bkt/root/a/none")).unwrap_err();
        assert!(
            missing
                .to_string()
                .starts_with("checkpoint storage: GET s3://bkt/root/a/none: "),
            "{missing}"
        );
        assert!(!missing.is_retryable());

        store
            .copy(&path("s3://bkt/root/a/one"), &path("s3://bkt/copy/one"))
            .unwrap();
        assert_eq!(store.get(&path("s3://bkt/copy/one")).unwrap(), b"1");
        store.delete(&path("s3://bkt/root/top")).unwrap();
        store.delete(&path("s3://bkt/root/top")).unwrap();
        store.delete_dir(&path("s3://bkt/root")).unwrap();
        store.delete_dir(&path("s3://bkt/root")).unwrap();
        assert!(store.list(&path("s3://bkt/root")).unwrap().is_empty());
        assert_eq!(names(&*store, "s3://bkt/copy").len(), 1);
        assert!(
            store.delete_dir(&path("s3://bkt")).is_err(),
            "never a whole bucket"
        );
    }

    /// A keyed snapshot of `agg` subtask 0 over key groups 0..4 holding `values` in key group
    /// `i % 4`, sliced one key group per slice (unchanged: none).
    fn snapshot(values: &[i64], base: Option<u64>) -> SubtaskSnapshot {
        let schema = Arc::new(Schema::new(vec![
            Field::new("key_group", DataType::UInt32, false),
            Field::new("value", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(UInt32Array::from_iter_values(
                    (0..values.len()).map(|i| i as u32 % 4),
                )),
                Arc::new(Int64Array::from(values.to_vec())),
            ],
        )
        .unwrap();
        SubtaskSnapshot {
            vertex: "agg".into(),
            subtask: 0,
            source_position: Some(serde_json::json!({ "offset": values.len() })),
            state: StateSnapshot {
                key_groups: Some(KeyGroupRange { start: 0, end: 4 }),
                tables: vec![SnapshotTable {
                    name: "groups".into(),
                    batches: vec![batch],
                    slices: Some(TableSlices {
                        width: 1,
                        base: base.map(CheckpointId),
                        unchanged: Vec::new(),
                    }),
                }],
                sink_pre_commit: Some(vec![7]),
            },
        }
    }

    fn complete(storage: &CheckpointStorage, id: u64, values: &[i64]) {
        let id = CheckpointId(id);
        let state = storage
            .write_subtask(id, &snapshot(values, id.0.checked_sub(1)))
            .unwrap();
        storage
            .complete(&CheckpointMetadata {
                version: sluice_engine::checkpoint::metadata::METADATA_VERSION,
                job_id: storage.job_id().0.clone(),
                checkpoint_id: id,
                trigger_timestamp_ms: 1,
                completed_timestamp_ms: 2,
                operators: vec![state],
            })
            .unwrap();
    }

    fn values(restored: &sluice_engine::checkpoint::RestoredCheckpoint) -> Vec<i64> {
        let state = restored
            .operator_state("agg", 0, KeyGroupRange { start: 0, end: 4 })
            .unwrap();
        let mut values: Vec<i64> = state.tables[0]
            .batches
            .iter()
            .flat_map(|b| {
                b.column(1)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect();
        values.sort_unstable();
        values
    }

    #[test]
    fn checkpoints_in_a_bucket_are_retained_verified_and_fall_back_when_corrupted() {
        let (dir, _moto, stores) = server();
        let root = path("s3://bkt/checkpoints");
        let storage = CheckpointStorage::open(&stores, &root, &JobId("job".into()), 2)
            .unwrap()
            .with_incremental(true);
        for id in 1..=3 {
            complete(&storage, id, &(0..id as i64 * 3).collect::<Vec<_>>());
        }
        assert_eq!(
            storage.completed_ids().unwrap(),
            vec![CheckpointId(2), CheckpointId(3)]
        );
        let store = storage.store().clone();
        assert!(
            store
                .list(&path("s3://bkt/checkpoints/job/chk-1"))
                .unwrap()
                .is_empty(),
            "checkpoint 1 is beyond the retained number"
        );
        // Only the shared slices the retained checkpoints reference stay.
        let shared = names(&*store, "s3://bkt/checkpoints/job/shared");
        assert_eq!(shared.len(), 8, "{shared:?}");
        let latest = storage.load_latest().unwrap().unwrap();
        assert_eq!(latest.checkpoint_id(), CheckpointId(3));
        assert_eq!(values(&latest), (0..9).collect::<Vec<_>>());

        // A file of checkpoint 3 is corrupted in the bucket: the restore falls back to 2.
        let (victim, _) = shared
            .iter()
            .find(|(name, _)| name.ends_with("-chk3.arrow"))
            .unwrap();
        let victim = path(&format!("s3://bkt/checkpoints/job/shared/{victim}"));
        let mut bytes = store.get(&victim).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        store.put(&victim, bytes).unwrap();
        let error = storage.load(CheckpointId(3)).unwrap_err().to_string();
        assert!(
            error.contains("corrupted") && error.contains(&victim.to_string()),
            "{error}"
        );
        let fallback = storage.load_latest().unwrap().unwrap();
        assert_eq!(fallback.checkpoint_id(), CheckpointId(2));
        assert_eq!(values(&fallback), (0..6).collect::<Vec<_>>());

        // Savepoints, in the bucket and on a local disk, are self-contained.
        let metadata = fallback.metadata.clone();
        let in_bucket = storage
            .write_savepoint(&metadata, &path("s3://bkt/savepoints"))
            .unwrap();
        assert!(
            in_bucket
                .to_string()
                .starts_with("s3://bkt/savepoints/savepoint-job-"),
            "{in_bucket}"
        );
        let local_root = StatePath::from(dir.path().join("savepoints"));
        complete(&storage, 4, &[40, 41]);
        let metadata = storage.load(CheckpointId(4)).unwrap().metadata;
        let on_disk = storage.write_savepoint(&metadata, &local_root).unwrap();
        assert!(on_disk.as_local().unwrap().join("_metadata").is_file());
        store.delete_dir(&path("s3://bkt/checkpoints")).unwrap();
        let restored = CheckpointStorage::load_from(&stores, &in_bucket).unwrap();
        assert_eq!(values(&restored), (0..6).collect::<Vec<_>>());
        let restored = CheckpointStorage::load_from(&stores, &on_disk).unwrap();
        assert_eq!(values(&restored), vec![40, 41]);
        let nothing = CheckpointStorage::load_from(&stores, &path("s3://bkt/nowhere/chk-1"))
            .unwrap_err()
            .to_string();
        assert!(nothing.contains("s3://bkt/nowhere/chk-1"), "{nothing}");
    }

    #[test]
    fn incomplete_checkpoints_in_a_bucket_are_discarded() {
        let (_dir, _moto, stores) = server();
        let storage =
            CheckpointStorage::open(&stores, &path("s3://bkt/c"), &JobId("job".into()), 3).unwrap();
        complete(&storage, 1, &[1]);
        storage
            .write_subtask(CheckpointId(2), &snapshot(&[2], None))
            .unwrap();
        assert_eq!(storage.completed_ids().unwrap(), vec![CheckpointId(1)]);
        let store = storage.store().clone();
        assert!(
            !store
                .list(&path("s3://bkt/c/job/chk-2"))
                .unwrap()
                .is_empty()
        );
        storage.discard_incomplete();
        assert!(
            store
                .list(&path("s3://bkt/c/job/chk-2"))
                .unwrap()
                .is_empty()
        );
        assert_eq!(storage.completed_ids().unwrap(), vec![CheckpointId(1)]);
    }

    #[test]
    fn an_unreachable_store_fails_with_the_operation_and_the_url() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let stores = state_stores(config(&format!("http://127.0.0.1:{port}")));
        let file = path("s3://bkt/p/job/chk-3/_metadata");
        let store = stores.store_for(&file).unwrap();
        let error = store.publish(&file, b"{}".to_vec()).unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with("checkpoint storage: PUT s3://bkt/p/job/chk-3/_metadata: "),
            "{message}"
        );
        assert!(error.is_retryable(), "{message}");
        assert!(!message.contains(SECRET_KEY), "{message}");
    }

    #[test]
    fn calls_from_inside_tokio_runtimes_do_not_panic() {
        let (_dir, _moto, stores) = server();
        let file = path("s3://bkt/from-async");
        let store = stores.store_for(&file).unwrap();
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let on_worker = store.clone();
        let (in_task, put) = (file.clone(), file.clone());
        multi.block_on(async move {
            tokio::spawn(async move { on_worker.put(&put, b"async".to_vec()) })
                .await
                .unwrap()
                .unwrap();
        });
        let single = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let read = single.block_on(async move { store.get(&in_task) }).unwrap();
        assert_eq!(read, b"async");
    }
}
