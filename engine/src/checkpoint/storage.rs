//! Checkpoint storage, laid out as Flink lays it out, in a local directory or an object store
//! (`s3://bucket/prefix`, through a [`StateStore`]):
//!
//! ```text
//! <dir>/<job-id>/chk-<n>/<vertex>-<subtask>-<table>.arrow   one Arrow IPC file per state table
//! <dir>/<job-id>/chk-<n>/_metadata                           JSON, written last
//! <dir>/<job-id>/shared/<vertex>-<subtask>-<table>-kg<a>-<b>-chk<n>.arrow
//!                                         a key-group slice, shared by incremental checkpoints
//! ```
//!
//! With incremental checkpoints (`execution.checkpointing.incremental`), a keyed table whose
//! operator tracks its changes ([`crate::state::TableSlices`]) is written as one file per
//! key-group slice into `shared/`, and only the slices that changed since the operator's
//! base checkpoint are written: the others are referenced, i.e. the new `_metadata` lists the
//! base's entry for them (path relative to the job directory, checksum, size). A shared file
//! is deleted once no retained checkpoint references it: after retention drops old
//! checkpoints, the references are recomputed from the `_metadata` files of the retained ones
//! and every other file in `shared/` (written by a checkpoint not newer than the newest
//! completed one) is removed. Nothing but the `_metadata` files is trusted, so a crash between
//! any two steps leaves at worst an unreferenced file, which the next retention removes.
//! Savepoints copy referenced files in and stay self-contained.
//!
//! State tables are written as **Arrow IPC** files (not Parquet): snapshots are already Arrow
//! batches, IPC writes them without encoding work, reads them back zero-copy-friendly and keeps
//! every Arrow type (Parquet would re-encode and lose some types, for no gain on state that is
//! read back whole). Each file's xxh3-64 checksum and length go into the metadata; a restore
//! re-hashes every file and skips, with a `warn!`, a checkpoint whose file is missing,
//! truncated or corrupted, falling back to the previous retained one.
//!
//! `_metadata` is published atomically ([`StateStore::publish`]: a temporary file renamed into
//! place on a local disk, one PUT on an object store), so it either exists whole or not at
//! all; a directory without it is an incomplete checkpoint. After each completion only the
//! newest `num-retained` completed checkpoints are kept.
//!
//! Every file is written and read whole, one store call each. On an object store a
//! completion costs one PUT, a listing of the job directory, one HEAD per checkpoint listed
//! and the deletes retention asks for; an incremental checkpoint adds one HEAD per referenced
//! slice (its presence is checked before it is referenced).

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::UInt32Type;
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::FileWriter;
use tracing::{debug, warn};
use xxhash_rust::xxh3::xxh3_64;

use super::metadata::{
    CheckpointMetadata, METADATA_FILE, METADATA_VERSION, OLDEST_METADATA_VERSION, OperatorState,
    StateFile, from_hex, shared_file_checkpoint, to_hex,
};
use super::store::{EntryKind, LocalStore, StatePath, StateStore, StateStores};
use crate::ids::{CheckpointId, JobId};
use crate::state::{KeyGroupRange, SnapshotTable, StateSnapshot, TableSlices, slice_range};
use crate::{Error, Result};

/// What one subtask of one vertex contributes to a checkpoint, before it is written.
#[derive(Debug, Clone)]
pub struct SubtaskSnapshot {
    pub vertex: String,
    pub subtask: u32,
    pub source_position: Option<serde_json::Value>,
    pub state: StateSnapshot,
}

/// The checkpoints of one job under `<dir>/<job-id>/`.
#[derive(Debug, Clone)]
pub struct CheckpointStorage {
    job_id: JobId,
    job_dir: StatePath,
    /// The store of `job_dir`.
    store: Arc<dyn StateStore>,
    /// Every store this process reaches (a savepoint may go to another one).
    stores: StateStores,
    num_retained: usize,
    incremental: bool,
}

/// The job directory's folder of files shared between checkpoints.
const SHARED_DIR: &str = "shared";

impl CheckpointStorage {
    /// Checkpoints in the local directory `dir`.
    pub fn new(dir: &Path, job_id: &JobId, num_retained: usize) -> Self {
        Self::with_store(
            Arc::new(LocalStore),
            StateStores::default(),
            StatePath::from(dir),
            job_id,
            num_retained,
        )
    }

    /// Checkpoints under `dir`, a local directory or an object-store URL that `stores` can
    /// open (an error names the URL otherwise).
    pub fn open(
        stores: &StateStores,
        dir: &StatePath,
        job_id: &JobId,
        num_retained: usize,
    ) -> Result<Self> {
        let store = stores.store_for(dir)?;
        Ok(Self::with_store(
            store,
            stores.clone(),
            dir.clone(),
            job_id,
            num_retained,
        ))
    }

    fn with_store(
        store: Arc<dyn StateStore>,
        stores: StateStores,
        dir: StatePath,
        job_id: &JobId,
        num_retained: usize,
    ) -> Self {
        CheckpointStorage {
            job_id: job_id.clone(),
            job_dir: dir.join(&job_id.0),
            store,
            stores,
            num_retained: num_retained.max(1),
            incremental: false,
        }
    }

    /// Writes keyed tables that come with [`TableSlices`] incrementally (see the module docs).
    pub fn with_incremental(mut self, incremental: bool) -> Self {
        self.incremental = incremental;
        self
    }

    /// The directory of files shared between checkpoints.
    pub fn shared_dir(&self) -> StatePath {
        self.job_dir.join(SHARED_DIR)
    }

    pub fn job_dir(&self) -> &StatePath {
        &self.job_dir
    }

    pub fn job_id(&self) -> &JobId {
        &self.job_id
    }

    /// The store holding the job's checkpoints.
    pub fn store(&self) -> &Arc<dyn StateStore> {
        &self.store
    }

    pub fn checkpoint_dir(&self, id: CheckpointId) -> StatePath {
        self.job_dir.join(&format!("chk-{}", id.0))
    }

    /// Writes the state files of one subtask's snapshot and returns their metadata entry.
    pub fn write_subtask(
        &self,
        id: CheckpointId,
        snapshot: &SubtaskSnapshot,
    ) -> Result<OperatorState> {
        let dir = self.checkpoint_dir(id);
        let mut files = Vec::new();
        for table in &snapshot.state.tables {
            match (&table.slices, snapshot.state.key_groups) {
                (Some(slices), Some(range)) if self.incremental => {
                    self.write_slices(id, snapshot, range, table, slices, &mut files)?;
                }
                (Some(TableSlices { unchanged, .. }), _) if !unchanged.is_empty() => {
                    return Err(Error::Internal(format!(
                        "state table '{}' of {} subtask {} left unchanged key-group slices out, \
                         but checkpoint {} is not incremental (a bug)",
                        table.name, snapshot.vertex, snapshot.subtask, id.0
                    )));
                }
                _ => {
                    let name = file_name(&snapshot.vertex, snapshot.subtask, &table.name);
                    let path = dir.join(&name);
                    if let Some(mut file) =
                        write_table(&*self.store, &path, &table.name, &table.batches)?
                    {
                        file.path = name;
                        files.push(file);
                    }
                }
            }
        }
        Ok(OperatorState {
            vertex: snapshot.vertex.clone(),
            subtask: snapshot.subtask,
            key_groups: snapshot.state.key_groups,
            source_position: snapshot.source_position.clone(),
            sink_pre_commit: snapshot.state.sink_pre_commit.as_deref().map(to_hex),
            files,
        })
    }

    /// Writes the changed key-group slices of a keyed `table` into `shared/` and references
    /// the unchanged ones from the base checkpoint.
    fn write_slices(
        &self,
        id: CheckpointId,
        snapshot: &SubtaskSnapshot,
        range: KeyGroupRange,
        table: &SnapshotTable,
        slices: &TableSlices,
        files: &mut Vec<StateFile>,
    ) -> Result<()> {
        let what = || {
            format!(
                "state table '{}' of {} subtask {} in checkpoint {}",
                table.name, snapshot.vertex, snapshot.subtask, id.0
            )
        };
        if slices.width == 0 {
            return Err(Error::Internal(format!(
                "{}: slice width 0 (a bug)",
                what()
            )));
        }
        if !slices.unchanged.is_empty() {
            let base = slices.base.ok_or_else(|| {
                Error::Internal(format!(
                    "{}: unchanged slices without a base (a bug)",
                    what()
                ))
            })?;
            let metadata =
                read_metadata(&*self.store, &self.checkpoint_dir(base)).map_err(|e| {
                    Error::Unavailable {
                        what: what(),
                        message: format!(
                            "checkpoint {} that it builds on is gone ({e}); the next checkpoint \
                         builds on a newer one",
                            base.0
                        ),
                    }
                })?;
            let base_state = metadata
                .operators
                .iter()
                .find(|o| {
                    o.vertex == snapshot.vertex
                        && o.subtask == snapshot.subtask
                        && o.key_groups == Some(range)
                })
                .ok_or_else(|| Error::Unavailable {
                    what: what(),
                    message: format!(
                        "checkpoint {} holds no state of this subtask for key groups {}..{}",
                        base.0, range.start, range.end
                    ),
                })?;
            for &slice in &slices.unchanged {
                let key_groups = slice_range(slice, slices.width, range);
                for file in base_state
                    .files
                    .iter()
                    .filter(|f| f.table == table.name && f.key_groups == Some(key_groups))
                {
                    let path = self.job_dir.join(&file.path);
                    let present =
                        file.shared && self.store.size(&path)?.is_some_and(|n| n == file.bytes);
                    if !present {
                        return Err(Error::Unavailable {
                            what: what(),
                            message: format!(
                                "the file {path} of checkpoint {} it references is missing",
                                base.0
                            ),
                        });
                    }
                    files.push(file.clone());
                }
            }
        }
        let shared = self.shared_dir();
        let stem = file_name(&snapshot.vertex, snapshot.subtask, &table.name);
        let stem = stem.trim_end_matches(".arrow");
        for (slice, batches) in partition_by_slice(table, range, slices.width, &what)? {
            if slices.unchanged.contains(&slice) {
                return Err(Error::Internal(format!(
                    "{}: rows of slice {slice}, which is declared unchanged (a bug)",
                    what()
                )));
            }
            let key_groups = slice_range(slice, slices.width, range);
            let name = format!(
                "{stem}-kg{}-{}-chk{}.arrow",
                key_groups.start, key_groups.end, id.0
            );
            if let Some(mut file) =
                write_table(&*self.store, &shared.join(&name), &table.name, &batches)?
            {
                file.path = format!("{SHARED_DIR}/{name}");
                file.shared = true;
                file.key_groups = Some(key_groups);
                files.push(file);
            }
        }
        Ok(())
    }

    /// Completes a checkpoint: writes `_metadata` atomically, then drops checkpoints beyond
    /// the retained number.
    pub fn complete(&self, metadata: &CheckpointMetadata) -> Result<()> {
        self.publish(metadata)?;
        self.retain()
    }

    /// The first half of [`CheckpointStorage::complete`]: writes `_metadata` atomically and
    /// deletes nothing. Under high availability the checkpoint counts as completed only once
    /// its pointer in etcd moved; retention ([`CheckpointStorage::retain`]) runs after that,
    /// so a deposed leader cannot delete the checkpoint the new leader resumes from.
    pub fn publish(&self, metadata: &CheckpointMetadata) -> Result<()> {
        let dir = self.checkpoint_dir(metadata.checkpoint_id);
        write_metadata(&*self.store, &dir, metadata)
    }

    /// Turns the checkpoint directory of the savepoint `metadata` describes into a
    /// self-contained savepoint directory `<root>/savepoint-<short job id>-<random>/` (its state
    /// files and `_metadata`, nothing else) and returns its path. The savepoint lives outside
    /// the job's directory, so checkpoint retention never deletes it. `root` may be on another
    /// store than the checkpoints (the files are then copied across).
    pub fn write_savepoint(
        &self,
        metadata: &CheckpointMetadata,
        root: &StatePath,
    ) -> Result<StatePath> {
        let staged = self.checkpoint_dir(metadata.checkpoint_id);
        let short: String = self.job_id.0.chars().take(6).collect();
        let random = JobId::generate();
        let dir = root.join(&format!("savepoint-{short}-{}", &random.0[..12]));
        let mut metadata = metadata.clone();
        let target = if root.same_store(&self.job_dir) {
            None
        } else {
            Some(self.stores.store_for(root)?)
        };
        let result = (|| {
            let transfer = |from: &StatePath, to: &StatePath, rename: bool| match &target {
                None if rename => self.store.rename(from, to),
                None => self.store.copy(from, to),
                Some(target) => target.put(to, self.store.get(from)?),
            };
            for file in metadata.operators.iter_mut().flat_map(|o| &mut o.files) {
                if file.shared {
                    // Referenced by other checkpoints: copied, and local to the savepoint.
                    let name = file
                        .path
                        .rsplit('/')
                        .next()
                        .unwrap_or(&file.path)
                        .to_string();
                    transfer(&self.job_dir.join(&file.path), &dir.join(&name), false)?;
                    file.path = name;
                    file.shared = false;
                    continue;
                }
                transfer(&staged.join(&file.path), &dir.join(&file.path), true)?;
            }
            write_metadata(target.as_deref().unwrap_or(&*self.store), &dir, &metadata)
        })();
        self.discard(metadata.checkpoint_id);
        match result {
            Ok(()) => Ok(dir),
            Err(error) => {
                let _ = target.as_deref().unwrap_or(&*self.store).delete_dir(&dir);
                Err(error)
            }
        }
    }

    /// Removes the directory of a checkpoint that will not complete, or is no longer
    /// retained. `_metadata` goes first, so a crash half-way leaves an incomplete checkpoint,
    /// never a completed one with missing files. Shared files are left to
    /// [`CheckpointStorage::collect_shared`].
    pub fn discard(&self, id: CheckpointId) {
        let dir = self.checkpoint_dir(id);
        let removed = self
            .store
            .delete(&dir.join(METADATA_FILE))
            .and_then(|()| self.store.delete_dir(&dir));
        if let Err(error) = removed {
            warn!(checkpoint_id = id.0, path = %dir, %error, "could not remove aborted checkpoint");
        }
    }

    /// Ids of the checkpoints that have a `_metadata` file, oldest first.
    pub fn completed_ids(&self) -> Result<Vec<CheckpointId>> {
        let (completed, _) = self.list()?;
        Ok(completed)
    }

    /// Removes every checkpoint directory without a `_metadata` file. Called once no task
    /// can write into one any more (the job's tasks have all stopped), so files a task wrote
    /// for a checkpoint that was aborted, or still pending when the job ended, do not stay.
    pub fn discard_incomplete(&self) {
        if let Ok((_, incomplete)) = self.list() {
            for id in incomplete {
                self.discard(id);
            }
        }
        self.collect_shared(None);
    }

    /// Deletes the shared files that no completed checkpoint references, among those written
    /// by checkpoints up to `up_to` (`None`: all; files of newer, still pending checkpoints
    /// stay). The references come from the `_metadata` files alone; if one cannot be read,
    /// nothing is deleted.
    fn collect_shared(&self, up_to: Option<CheckpointId>) {
        let shared = self.shared_dir();
        let entries = match self.store.list(&shared) {
            Ok(entries) if !entries.is_empty() => entries,
            Ok(_) => return,
            Err(error) => {
                warn!(job_id = %self.job_id, %error, "shared state files cannot be listed; keeping them");
                return;
            }
        };
        let Ok((completed, _)) = self.list() else {
            return;
        };
        let mut referenced = std::collections::HashSet::new();
        for id in completed {
            match read_metadata(&*self.store, &self.checkpoint_dir(id)) {
                Ok(metadata) => referenced.extend(
                    metadata
                        .operators
                        .into_iter()
                        .flat_map(|o| o.files)
                        .filter(|f| f.shared)
                        .map(|f| f.path),
                ),
                Err(error) => {
                    warn!(job_id = %self.job_id, checkpoint_id = id.0, %error, "checkpoint metadata is unreadable; keeping all shared state files");
                    return;
                }
            }
        }
        for entry in entries {
            if entry.kind != EntryKind::File {
                continue;
            }
            let name = entry.name;
            let Some(written_by) = shared_file_checkpoint(&name) else {
                continue;
            };
            if referenced.contains(&format!("{SHARED_DIR}/{name}"))
                || up_to.is_some_and(|newest| written_by > newest)
            {
                continue;
            }
            debug!(
                checkpoint_id = written_by.0,
                file = name,
                "removing an unreferenced shared state file"
            );
            let path = shared.join(&name);
            if let Err(error) = self.store.delete(&path) {
                warn!(path = %path, %error, "could not remove an unreferenced shared state file");
            }
        }
    }

    /// The ids of the completed and of the incomplete checkpoint directories, oldest first.
    fn list(&self) -> Result<(Vec<CheckpointId>, Vec<CheckpointId>)> {
        let mut ids = Vec::new();
        let mut incomplete = Vec::new();
        for entry in self.store.list(&self.job_dir)? {
            if entry.kind != EntryKind::Directory {
                continue;
            }
            let Some(id) = entry
                .name
                .strip_prefix("chk-")
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let metadata = self.checkpoint_dir(CheckpointId(id)).join(METADATA_FILE);
            if self.store.size(&metadata)?.is_some() {
                ids.push(CheckpointId(id));
            } else {
                incomplete.push(CheckpointId(id));
            }
        }
        ids.sort();
        incomplete.sort();
        Ok((ids, incomplete))
    }

    /// Deletes completed checkpoints beyond the newest `num_retained`, and incomplete ones
    /// older than the newest completed one.
    pub fn retain(&self) -> Result<()> {
        let (completed, incomplete) = self.list()?;
        let newest = completed.last().copied();
        for &id in incomplete.iter().filter(|&&id| Some(id) < newest) {
            debug!(checkpoint_id = id.0, "removing an aborted checkpoint");
            self.discard(id);
        }
        let keep_from = completed.len().saturating_sub(self.num_retained);
        for &id in &completed[..keep_from] {
            debug!(
                checkpoint_id = id.0,
                "removing checkpoint beyond the retained number"
            );
            self.discard(id);
        }
        self.collect_shared(newest);
        Ok(())
    }

    /// The newest completed checkpoint whose files are all intact. Checkpoints with a
    /// missing, truncated or corrupted file are skipped with a warning.
    pub fn load_latest(&self) -> Result<Option<RestoredCheckpoint>> {
        self.load_latest_up_to(CheckpointId(u64::MAX))
    }

    /// The newest completed checkpoint not newer than `newest` whose files are all intact
    /// (under high availability, `newest` is the one etcd's pointer names: a newer
    /// `_metadata` was written by a leader whose commit did not go through).
    pub fn load_latest_up_to(&self, newest: CheckpointId) -> Result<Option<RestoredCheckpoint>> {
        for id in self.completed_ids()?.into_iter().rev() {
            if id > newest {
                continue;
            }
            match self.load(id) {
                Ok(restored) => return Ok(Some(restored)),
                Err(error) => warn!(
                    job_id = %self.job_id,
                    checkpoint_id = id.0,
                    %error,
                    "checkpoint is unreadable; falling back to the previous one"
                ),
            }
        }
        Ok(None)
    }

    /// Reads and verifies one completed checkpoint.
    pub fn load(&self, id: CheckpointId) -> Result<RestoredCheckpoint> {
        load_from_store(&*self.store, &self.checkpoint_dir(id))
    }

    /// Reads and verifies the completed checkpoint or savepoint in the local directory `dir`
    /// (a directory holding `_metadata`, e.g. `<root>/<job-id>/chk-<n>`): every state file's
    /// size and checksum must match; a mismatch is an error naming the file.
    pub fn load_dir(dir: &Path) -> Result<RestoredCheckpoint> {
        load_from_store(&LocalStore, &StatePath::from(dir))
    }

    /// [`CheckpointStorage::load_dir`] for a directory on any store `stores` reaches (a
    /// savepoint or retained checkpoint on `s3://`, say).
    pub fn load_from(stores: &StateStores, dir: &StatePath) -> Result<RestoredCheckpoint> {
        load_from_store(&*stores.store_for(dir)?, dir)
    }
}

/// Reads and verifies the completed checkpoint or savepoint in `dir` on `store`.
fn load_from_store(store: &dyn StateStore, dir: &StatePath) -> Result<RestoredCheckpoint> {
    let path = dir.join(METADATA_FILE);
    if store.size(&path)?.is_none() {
        if store.list(dir)?.is_empty() {
            return Err(match dir {
                StatePath::Local(local) => Error::io(
                    "read checkpoint",
                    local,
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory"),
                ),
                StatePath::Object(url) => Error::Storage {
                    operation: "LIST",
                    location: url.to_string(),
                    message: "nothing there: no checkpoint or savepoint".into(),
                    retryable: false,
                },
            });
        }
        return Err(Error::data(
            dir.to_string(),
            "no _metadata file: not a completed checkpoint or savepoint",
        ));
    }
    let metadata = read_metadata(store, dir)?;
    // Shared files are named relative to the job directory, the checkpoint's parent.
    let job_dir = dir.parent().unwrap_or_else(|| dir.clone());
    let mut states = Vec::with_capacity(metadata.operators.len());
    for operator in &metadata.operators {
        let mut tables: Vec<SnapshotTable> = Vec::new();
        for file in &operator.files {
            let read = read_table(store, if file.shared { &job_dir } else { dir }, file)?;
            // The slices of one table become one table again.
            match tables.iter_mut().find(|t| t.name == read.name) {
                Some(table) => table.batches.extend(read.batches),
                None => tables.push(read),
            }
        }
        let sink_pre_commit = match &operator.sink_pre_commit {
            Some(hex) => Some(
                from_hex(hex)
                    .ok_or_else(|| Error::data(path.to_string(), "sink pre-commit is not hex"))?,
            ),
            None => None,
        };
        states.push(RestoredOperator {
            vertex: operator.vertex.clone(),
            subtask: operator.subtask,
            source_position: operator.source_position.clone(),
            state: StateSnapshot {
                key_groups: operator.key_groups,
                tables,
                sink_pre_commit,
            },
        });
    }
    Ok(RestoredCheckpoint { metadata, states })
}

/// Reads and checks the version of `dir/_metadata`.
fn read_metadata(store: &dyn StateStore, dir: &StatePath) -> Result<CheckpointMetadata> {
    let path = dir.join(METADATA_FILE);
    let bytes = store.get(&path)?;
    let metadata: CheckpointMetadata =
        serde_json::from_slice(&bytes).map_err(|e| Error::data(path.to_string(), e.to_string()))?;
    if !(OLDEST_METADATA_VERSION..=METADATA_VERSION).contains(&metadata.version) {
        return Err(Error::data(
            path.to_string(),
            format!("unknown metadata version {}", metadata.version),
        ));
    }
    Ok(metadata)
}

/// Splits the rows of a keyed `table` by key-group slice (slices of `width` key groups within
/// `range`): one counting sort over the `key_group` column and one `take` per batch, then a
/// zero-copy slice per run. Returns the slices in order, each with its batches.
fn partition_by_slice(
    table: &SnapshotTable,
    range: KeyGroupRange,
    width: u32,
    what: &dyn Fn() -> String,
) -> Result<Vec<(u32, Vec<RecordBatch>)>> {
    let first_slice = range.start / width;
    let slice_count = crate::state::slices_of(range, width).len();
    let mut out: Vec<Vec<RecordBatch>> = vec![Vec::new(); slice_count];
    let mut slice_of_row = Vec::new();
    let mut indices = Vec::new();
    for batch in &table.batches {
        let key_groups = batch
            .column_by_name("key_group")
            .and_then(|c| c.as_primitive_opt::<UInt32Type>())
            .ok_or_else(|| {
                Error::Internal(format!(
                    "{}: a sliced table without a UInt32 key_group column (a bug)",
                    what()
                ))
            })?;
        let mut counts = vec![0usize; slice_count + 1];
        slice_of_row.clear();
        for &kg in key_groups.values() {
            if !range.contains(kg) {
                return Err(Error::Internal(format!(
                    "{}: a row of key group {kg}, outside the subtask's {}..{} (a bug)",
                    what(),
                    range.start,
                    range.end
                )));
            }
            let slice = (kg / width - first_slice) as usize;
            slice_of_row.push(slice as u32);
            counts[slice + 1] += 1;
        }
        for i in 1..counts.len() {
            counts[i] += counts[i - 1];
        }
        let offsets = counts.clone();
        indices.clear();
        indices.resize(batch.num_rows(), 0u32);
        for (row, &slice) in slice_of_row.iter().enumerate() {
            let at = &mut counts[slice as usize];
            indices[*at] = row as u32;
            *at += 1;
        }
        let sorted = take_record_batch(batch, &UInt32Array::from(std::mem::take(&mut indices)))
            .map_err(|e| Error::arrow(what(), e))?;
        for slice in 0..slice_count {
            let (start, end) = (offsets[slice], offsets[slice + 1]);
            if end > start {
                out[slice].push(sorted.slice(start, end - start));
            }
        }
    }
    Ok(out
        .into_iter()
        .enumerate()
        .filter(|(_, batches)| !batches.is_empty())
        .map(|(i, batches)| (first_slice + i as u32, batches))
        .collect())
}

/// Publishes `_metadata` into `dir` ([`StateStore::publish`]: whole or not at all).
fn write_metadata(
    store: &dyn StateStore,
    dir: &StatePath,
    metadata: &CheckpointMetadata,
) -> Result<()> {
    let json = serde_json::to_vec_pretty(metadata)
        .map_err(|e| Error::Internal(format!("checkpoint metadata does not serialise: {e}")))?;
    store.publish(&dir.join(METADATA_FILE), json)
}

/// One subtask's state, read back.
#[derive(Debug, Clone)]
pub struct RestoredOperator {
    pub vertex: String,
    pub subtask: u32,
    pub source_position: Option<serde_json::Value>,
    pub state: StateSnapshot,
}

/// A verified completed checkpoint, ready to hand its state to a new attempt's tasks.
#[derive(Debug, Clone)]
pub struct RestoredCheckpoint {
    pub metadata: CheckpointMetadata,
    pub states: Vec<RestoredOperator>,
}

impl RestoredCheckpoint {
    pub fn checkpoint_id(&self) -> CheckpointId {
        self.metadata.checkpoint_id
    }

    /// The source position of `subtask` of `vertex`.
    pub fn source_position(&self, vertex: &str, subtask: u32) -> Option<&serde_json::Value> {
        self.states
            .iter()
            .find(|s| s.vertex == vertex && s.subtask == subtask)
            .and_then(|s| s.source_position.as_ref())
    }

    /// The position to restore `subtask` of a source `vertex` now running at `parallelism`.
    ///
    /// A split-based position (`{"splits": {…}}`, see the `nexmark` and `datagen` sources)
    /// does not depend on the parallelism: the splits of every old subtask are merged and each
    /// reader takes its own. Any other position belongs to one subtask and restores only at the
    /// parallelism it was taken at.
    pub fn source_position_for(
        &self,
        vertex: &str,
        subtask: u32,
        parallelism: u32,
    ) -> Result<Option<serde_json::Value>> {
        let positions: Vec<(u32, &serde_json::Value)> = self
            .states
            .iter()
            .filter(|s| s.vertex == vertex)
            .filter_map(|s| s.source_position.as_ref().map(|p| (s.subtask, p)))
            .collect();
        if positions.is_empty() {
            return Ok(None);
        }
        let split_maps: Option<Vec<&serde_json::Map<String, serde_json::Value>>> = positions
            .iter()
            .map(|(_, p)| p.get("splits").and_then(serde_json::Value::as_object))
            .collect();
        if let Some(maps) = split_maps {
            let mut merged = serde_json::Map::new();
            for map in maps {
                merged.extend(map.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            return Ok(Some(serde_json::json!({ "splits": merged })));
        }
        let old_parallelism = positions.len() as u32;
        if old_parallelism != parallelism {
            return Err(Error::Config {
                key: "parallelism".into(),
                value: parallelism.to_string(),
                message: format!(
                    "source '{vertex}' was checkpointed at parallelism {old_parallelism} and its \
                     positions are per subtask; it can only be restored at parallelism \
                     {old_parallelism}"
                ),
            });
        }
        Ok(positions
            .into_iter()
            .find(|(s, _)| *s == subtask)
            .map(|(_, p)| p.clone()))
    }

    /// The state for `subtask` of `vertex` owning `owned`. Keyed state is gathered from every
    /// old subtask whose key groups overlap `owned` (the operator keeps the rows of its own
    /// key groups, so this works at another parallelism); other state comes from the same
    /// subtask index.
    pub fn operator_state(
        &self,
        vertex: &str,
        subtask: u32,
        owned: KeyGroupRange,
    ) -> Option<StateSnapshot> {
        let of_vertex: Vec<&RestoredOperator> =
            self.states.iter().filter(|s| s.vertex == vertex).collect();
        if of_vertex.iter().any(|s| s.state.key_groups.is_some()) {
            let mut by_table: BTreeMap<String, SnapshotTable> = BTreeMap::new();
            for s in &of_vertex {
                let Some(range) = s.state.key_groups else {
                    continue;
                };
                if range.end <= owned.start || range.start >= owned.end {
                    continue;
                }
                for table in &s.state.tables {
                    by_table
                        .entry(table.name.clone())
                        .or_insert_with(|| SnapshotTable {
                            slices: None,
                            name: table.name.clone(),
                            batches: Vec::new(),
                        })
                        .batches
                        .extend(table.batches.iter().cloned());
                }
            }
            let sink_pre_commit = of_vertex
                .iter()
                .find(|s| s.subtask == subtask)
                .and_then(|s| s.state.sink_pre_commit.clone());
            return Some(StateSnapshot {
                key_groups: Some(owned),
                tables: by_table.into_values().collect(),
                sink_pre_commit,
            });
        }
        if let Some(own) = of_vertex.iter().find(|s| s.subtask == subtask) {
            return Some(own.state.clone());
        }
        // A subtask without a counterpart in the checkpoint (restored at a higher parallelism)
        // still learns which checkpoint it resumes from, so that a sink recovers to it: an
        // empty pre-commit, framed as the sink operator frames it (the checkpoint id, 8 bytes
        // little endian, then the sink's data).
        of_vertex
            .iter()
            .any(|s| s.state.sink_pre_commit.is_some())
            .then(|| StateSnapshot {
                key_groups: None,
                tables: Vec::new(),
                sink_pre_commit: Some(self.checkpoint_id().0.to_le_bytes().to_vec()),
            })
    }
}

/// A file name made of the vertex, subtask and table, safe on any file system; a hash of the
/// raw names keeps two names that sanitise alike apart.
fn file_name(vertex: &str, subtask: u32, table: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(48)
            .collect()
    };
    let hash = xxh3_64(format!("{vertex}\u{0}{table}").as_bytes()) as u32;
    format!(
        "{}-{subtask}-{}-{hash:08x}.arrow",
        clean(vertex),
        clean(table)
    )
}

/// Writes `batches` of table `table` as one Arrow IPC file at `path`; the returned entry's
/// `path` is the file name (callers adjust it).
fn write_table(
    store: &dyn StateStore,
    path: &StatePath,
    table: &str,
    batches: &[RecordBatch],
) -> Result<Option<StateFile>> {
    let Some(first) = batches.first() else {
        return Ok(None);
    };
    let name = path
        .to_string()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let context = || format!("checkpoint file {path}");
    let mut buffer = Vec::new();
    let mut rows = 0u64;
    {
        let mut writer = FileWriter::try_new(&mut buffer, &first.schema())
            .map_err(|e| Error::arrow(context(), e))?;
        for batch in batches {
            rows += batch.num_rows() as u64;
            writer
                .write(batch)
                .map_err(|e| Error::arrow(context(), e))?;
        }
        writer.finish().map_err(|e| Error::arrow(context(), e))?;
    }
    let checksum = format!("{:016x}", xxh3_64(&buffer));
    let bytes = buffer.len() as u64;
    store.put(path, buffer)?;
    Ok(Some(StateFile {
        table: table.to_string(),
        path: name,
        shared: false,
        key_groups: None,
        checksum,
        bytes,
        rows,
    }))
}

fn read_table(store: &dyn StateStore, dir: &StatePath, file: &StateFile) -> Result<SnapshotTable> {
    let path = dir.join(&file.path);
    let bytes = store.get(&path)?;
    let checksum = format!("{:016x}", xxh3_64(&bytes));
    if bytes.len() as u64 != file.bytes || checksum != file.checksum {
        return Err(Error::data(
            path.to_string(),
            format!(
                "state file is corrupted: {} bytes with checksum {checksum}, expected {} bytes \
                 with checksum {}",
                bytes.len(),
                file.bytes,
                file.checksum
            ),
        ));
    }
    let reader = FileReader::try_new(Cursor::new(bytes), None)
        .map_err(|e| Error::arrow(format!("state file {path}"), e))?;
    let batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::arrow(format!("state file {path}"), e))?;
    Ok(SnapshotTable {
        slices: None,
        name: file.table.clone(),
        batches,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch, UInt32Array};
    use arrow::datatypes::{DataType, Field, Schema};

    use std::fs;
    use std::path::PathBuf;

    use super::*;

    /// The local directory of a path of a local storage.
    fn local_dir(path: StatePath) -> PathBuf {
        path.as_local().expect("a local store").to_path_buf()
    }

    fn snapshot(vertex: &str, subtask: u32, values: &[i64]) -> SubtaskSnapshot {
        let schema = Arc::new(Schema::new(vec![
            Field::new("key_group", DataType::UInt32, false),
            Field::new("value", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(UInt32Array::from_iter_values(
                    values.iter().map(|&v| v as u32),
                )),
                Arc::new(Int64Array::from(values.to_vec())),
            ],
        )
        .unwrap();
        SubtaskSnapshot {
            vertex: vertex.to_string(),
            subtask,
            source_position: Some(serde_json::json!({"offset": values.len()})),
            state: StateSnapshot {
                key_groups: Some(KeyGroupRange { start: 0, end: 128 }),
                tables: vec![SnapshotTable {
                    slices: None,
                    name: "groups".into(),
                    batches: vec![batch],
                }],
                sink_pre_commit: Some(vec![1, 2, 3]),
            },
        }
    }

    fn complete(storage: &CheckpointStorage, id: u64, values: &[i64]) {
        let id = CheckpointId(id);
        let state = storage
            .write_subtask(id, &snapshot("Count / agg", 0, values))
            .unwrap();
        storage
            .complete(&CheckpointMetadata {
                version: METADATA_VERSION,
                job_id: storage.job_id().0.clone(),
                checkpoint_id: id,
                trigger_timestamp_ms: 1,
                completed_timestamp_ms: 2,
                operators: vec![state],
            })
            .unwrap();
    }

    fn values(restored: &RestoredCheckpoint) -> Vec<i64> {
        let state = restored
            .operator_state("Count / agg", 0, KeyGroupRange { start: 0, end: 128 })
            .unwrap();
        state.tables[0].batches[0]
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .values()
            .to_vec()
    }

    fn state_file(storage: &CheckpointStorage, id: u64) -> PathBuf {
        fs::read_dir(local_dir(storage.checkpoint_dir(CheckpointId(id))))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "arrow"))
            .unwrap()
    }

    #[test]
    fn written_checkpoint_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let storage = CheckpointStorage::new(dir.path(), &JobId("job".into()), 1);
        complete(&storage, 1, &[1, 2, 3]);
        let restored = storage.load_latest().unwrap().unwrap();
        assert_eq!(restored.checkpoint_id(), CheckpointId(1));
        assert_eq!(values(&restored), vec![1, 2, 3]);
        assert_eq!(
            restored.source_position("Count / agg", 0),
            Some(&serde_json::json!({"offset": 3}))
        );
        let state = restored
            .operator_state("Count / agg", 0, KeyGroupRange { start: 0, end: 128 })
            .unwrap();
        assert_eq!(state.sink_pre_commit, Some(vec![1, 2, 3]));
        assert!(restored.metadata.state_bytes() > 0);
    }

    #[test]
    fn corrupted_file_falls_back_to_previous_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let storage = CheckpointStorage::new(dir.path(), &JobId("job".into()), 2);
        complete(&storage, 1, &[1]);
        complete(&storage, 2, &[1, 2]);
        let path = state_file(&storage, 2);
        let mut bytes = fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        fs::write(&path, bytes).unwrap();
        assert!(
            storage
                .load(CheckpointId(2))
                .unwrap_err()
                .to_string()
                .contains("corrupted")
        );
        let restored = storage.load_latest().unwrap().unwrap();
        assert_eq!(restored.checkpoint_id(), CheckpointId(1));
        assert_eq!(values(&restored), vec![1]);
    }

    #[test]
    fn truncated_file_falls_back_to_previous_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let storage = CheckpointStorage::new(dir.path(), &JobId("job".into()), 2);
        complete(&storage, 1, &[1]);
        complete(&storage, 2, &[1, 2]);
        let path = state_file(&storage, 2);
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
        let restored = storage.load_latest().unwrap().unwrap();
        assert_eq!(restored.checkpoint_id(), CheckpointId(1));
    }

    #[test]
    fn retention_keeps_the_newest_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let storage = CheckpointStorage::new(dir.path(), &JobId("job".into()), 2);
        for id in 1..=4 {
            complete(&storage, id, &[id as i64]);
        }
        assert_eq!(
            storage.completed_ids().unwrap(),
            vec![CheckpointId(3), CheckpointId(4)]
        );
        assert!(!local_dir(storage.checkpoint_dir(CheckpointId(1))).exists());
        assert!(!local_dir(storage.checkpoint_dir(CheckpointId(2))).exists());
    }

    #[test]
    fn metadata_is_published_atomically_and_incomplete_dirs_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let storage = CheckpointStorage::new(dir.path(), &JobId("job".into()), 3);
        complete(&storage, 1, &[1]);
        // A checkpoint whose files were written but whose metadata never was (a crash before
        // completion), and one with only a half-written temporary metadata file.
        storage
            .write_subtask(CheckpointId(2), &snapshot("Count / agg", 0, &[9]))
            .unwrap();
        fs::write(
            local_dir(storage.checkpoint_dir(CheckpointId(2))).join("_metadata.inprogress"),
            b"{\"version\"",
        )
        .unwrap();
        let chk1 = local_dir(storage.checkpoint_dir(CheckpointId(1)));
        assert!(chk1.join(METADATA_FILE).is_file());
        assert!(!chk1.join("_metadata.inprogress").exists());
        assert_eq!(storage.completed_ids().unwrap(), vec![CheckpointId(1)]);
        assert_eq!(
            storage.load_latest().unwrap().unwrap().checkpoint_id(),
            CheckpointId(1)
        );
    }

    #[test]
    fn aborted_checkpoint_directories_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let storage = CheckpointStorage::new(dir.path(), &JobId("job".into()), 3);
        let write = |id| {
            storage
                .write_subtask(CheckpointId(id), &snapshot("Count / agg", 0, &[9]))
                .unwrap();
        };
        // Files of aborted checkpoint 1 go once a newer checkpoint completes.
        write(1);
        complete(&storage, 2, &[1]);
        assert!(!local_dir(storage.checkpoint_dir(CheckpointId(1))).exists());
        // Checkpoint 3 was still pending when the job ended.
        write(3);
        assert!(local_dir(storage.checkpoint_dir(CheckpointId(3))).exists());
        storage.discard_incomplete();
        assert!(!local_dir(storage.checkpoint_dir(CheckpointId(3))).exists());
        assert_eq!(storage.completed_ids().unwrap(), vec![CheckpointId(2)]);
    }
}

#[cfg(test)]
mod incremental_tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch, UInt32Array};
    use arrow::datatypes::{DataType, Field, Schema};

    use std::fs;
    use std::path::PathBuf;

    use super::*;

    /// The local directory of a path of a local storage.
    fn local_dir(path: StatePath) -> PathBuf {
        path.as_local().expect("a local store").to_path_buf()
    }

    const RANGE: KeyGroupRange = KeyGroupRange { start: 0, end: 4 };

    /// A keyed snapshot over key groups 0..4 (one slice each) holding `rows` (key group,
    /// value), leaving the slices `unchanged` since `base` out.
    fn sliced(rows: &[(u32, i64)], base: Option<u64>, unchanged: &[u32]) -> SubtaskSnapshot {
        let schema = Arc::new(Schema::new(vec![
            Field::new("key_group", DataType::UInt32, false),
            Field::new("value", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            ],
        )
        .unwrap();
        SubtaskSnapshot {
            vertex: "agg".into(),
            subtask: 0,
            source_position: None,
            state: StateSnapshot {
                key_groups: Some(RANGE),
                tables: vec![SnapshotTable {
                    name: "groups".into(),
                    batches: vec![batch],
                    slices: Some(TableSlices {
                        width: 1,
                        base: base.map(CheckpointId),
                        unchanged: unchanged.to_vec(),
                    }),
                }],
                sink_pre_commit: None,
            },
        }
    }

    fn complete(storage: &CheckpointStorage, id: u64, snapshot: &SubtaskSnapshot) -> Result<()> {
        let id = CheckpointId(id);
        let state = storage.write_subtask(id, snapshot)?;
        storage.complete(&CheckpointMetadata {
            version: METADATA_VERSION,
            job_id: storage.job_id().0.clone(),
            checkpoint_id: id,
            trigger_timestamp_ms: 1,
            completed_timestamp_ms: 2,
            operators: vec![state],
        })
    }

    /// The (key group, value) rows restored from `restored`, sorted.
    fn rows(restored: &RestoredCheckpoint) -> Vec<(u32, i64)> {
        let state = restored.operator_state("agg", 0, RANGE).unwrap();
        assert_eq!(state.tables.len(), 1, "slices merge into one table");
        let mut rows: Vec<(u32, i64)> = state.tables[0]
            .batches
            .iter()
            .flat_map(|b| {
                let kg = b.column(0).as_primitive::<UInt32Type>().clone();
                let v = b
                    .column(1)
                    .as_primitive::<arrow::datatypes::Int64Type>()
                    .clone();
                (0..b.num_rows())
                    .map(move |i| (kg.value(i), v.value(i)))
                    .collect::<Vec<_>>()
            })
            .collect();
        rows.sort_unstable();
        rows
    }

    fn shared_files(storage: &CheckpointStorage) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(local_dir(storage.shared_dir()))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn storage(dir: &Path, retained: usize) -> CheckpointStorage {
        CheckpointStorage::new(dir, &JobId("job".into()), retained).with_incremental(true)
    }

    const FULL: &[(u32, i64)] = &[(0, 1), (1, 2), (1, 3), (2, 4), (3, 5)];

    #[test]
    fn unchanged_slices_are_referenced_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let storage = storage(dir.path(), 2);
        complete(&storage, 1, &sliced(FULL, None, &[])).unwrap();
        // Only key group 1 changed: slices 0, 2 and 3 come from checkpoint 1.
        complete(
            &storage,
            2,
            &sliced(&[(1, 20), (1, 30)], Some(1), &[0, 2, 3]),
        )
        .unwrap();
        let first = storage.load(CheckpointId(1)).unwrap();
        let second = storage.load(CheckpointId(2)).unwrap();
        assert_eq!(first.metadata.written_files().count(), 4);
        assert_eq!(second.metadata.written_files().count(), 1);
        assert!(second.metadata.written_bytes() < first.metadata.written_bytes());
        assert_eq!(
            second.metadata.state_bytes() - second.metadata.written_bytes(),
            first.metadata.state_bytes() - first.metadata.operators[0].files[1].bytes
        );
        assert!(
            second.metadata.operators[0]
                .files
                .iter()
                .all(|f| f.shared && f.path.starts_with("shared/"))
        );
        assert_eq!(rows(&first), FULL);
        assert_eq!(
            rows(&second),
            vec![(0, 1), (1, 20), (1, 30), (2, 4), (3, 5)]
        );
        // A slice that became empty is simply not written (nor referenced).
        complete(&storage, 3, &sliced(&[], Some(2), &[1, 2, 3])).unwrap();
        assert_eq!(
            rows(&storage.load(CheckpointId(3)).unwrap()),
            vec![(1, 20), (1, 30), (2, 4), (3, 5)]
        );
    }

    #[test]
    fn unreferenced_shared_files_are_deleted_after_retention() {
        let dir = tempfile::tempdir().unwrap();
        let storage = storage(dir.path(), 1);
        complete(&storage, 1, &sliced(FULL, None, &[])).unwrap();
        assert_eq!(shared_files(&storage).len(), 4);
        // Left behind by a crash after writing, and by a checkpoint still pending.
        fs::write(
            local_dir(storage.shared_dir()).join("agg-0-groups-0-kg0-1-chk1.arrow"),
            b"x",
        )
        .unwrap();
        fs::write(
            local_dir(storage.shared_dir()).join("agg-0-groups-0-kg0-1-chk9.arrow"),
            b"x",
        )
        .unwrap();
        complete(&storage, 2, &sliced(&[(1, 20)], Some(1), &[0, 2, 3])).unwrap();
        assert_eq!(storage.completed_ids().unwrap(), vec![CheckpointId(2)]);
        let files = shared_files(&storage);
        // Checkpoint 1's slice of key group 1 is replaced and gone; its other slices stay,
        // referenced by checkpoint 2; the pending checkpoint's file stays.
        assert_eq!(files.len(), 5, "{files:?}");
        assert!(files.iter().any(|f| f.contains("-kg1-2-chk2")));
        assert!(!files.iter().any(|f| f.contains("-kg1-2-chk1")));
        assert!(files.iter().any(|f| f.ends_with("kg0-1-chk9.arrow")));
        assert!(
            !files
                .iter()
                .any(|f| f.ends_with("groups-0-kg0-1-chk1.arrow"))
        );
        assert_eq!(
            rows(&storage.load_latest().unwrap().unwrap()),
            vec![(0, 1), (1, 20), (2, 4), (3, 5)]
        );
        // Once the job's tasks have stopped, nothing unreferenced stays.
        storage.discard_incomplete();
        assert_eq!(shared_files(&storage).len(), 4);
    }

    #[test]
    fn corrupted_referenced_file_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let storage = storage(dir.path(), 3);
        complete(&storage, 1, &sliced(FULL, None, &[])).unwrap();
        complete(&storage, 2, &sliced(&[(1, 20)], Some(1), &[0, 2, 3])).unwrap();
        complete(&storage, 3, &sliced(&[(1, 21)], Some(2), &[0, 2, 3])).unwrap();
        // Checkpoint 3's own file is corrupted: it falls back to checkpoint 2.
        let own = local_dir(storage.shared_dir()).join(
            shared_files(&storage)
                .into_iter()
                .find(|f| f.ends_with("chk3.arrow"))
                .unwrap(),
        );
        let mut bytes = fs::read(&own).unwrap();
        bytes[10] ^= 0xff;
        fs::write(&own, bytes).unwrap();
        let restored = storage.load_latest().unwrap().unwrap();
        assert_eq!(restored.checkpoint_id(), CheckpointId(2));
        // A file of checkpoint 1 that all three reference is truncated: none restores.
        let referenced = local_dir(storage.shared_dir()).join(
            shared_files(&storage)
                .into_iter()
                .find(|f| f.contains("-kg3-4-chk1"))
                .unwrap(),
        );
        let bytes = fs::read(&referenced).unwrap();
        fs::write(&referenced, &bytes[..bytes.len() - 1]).unwrap();
        let error = storage.load(CheckpointId(2)).unwrap_err().to_string();
        assert!(
            error.contains("corrupted") && error.contains("kg3-4-chk1"),
            "{error}"
        );
        assert!(storage.load_latest().unwrap().is_none());
        // A new checkpoint does not build on the damaged file.
        let error = complete(&storage, 4, &sliced(&[], Some(3), &[0, 2, 3]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("missing"), "{error}");
    }

    #[test]
    fn a_gone_base_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let storage = storage(dir.path(), 1);
        complete(&storage, 1, &sliced(FULL, None, &[])).unwrap();
        complete(&storage, 2, &sliced(FULL, None, &[])).unwrap();
        let error = complete(&storage, 3, &sliced(&[], Some(1), &[0, 1, 2, 3]))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("checkpoint 1 that it builds on is gone"),
            "{error}"
        );
        assert_eq!(storage.completed_ids().unwrap(), vec![CheckpointId(2)]);
    }

    #[test]
    fn savepoint_copies_referenced_files_in() {
        let dir = tempfile::tempdir().unwrap();
        let storage = storage(dir.path(), 1);
        complete(&storage, 1, &sliced(FULL, None, &[])).unwrap();
        let id = CheckpointId(2);
        let state = storage
            .write_subtask(id, &sliced(&[(2, 40)], Some(1), &[0, 1, 3]))
            .unwrap();
        let metadata = CheckpointMetadata {
            version: METADATA_VERSION,
            job_id: "job".into(),
            checkpoint_id: id,
            trigger_timestamp_ms: 1,
            completed_timestamp_ms: 2,
            operators: vec![state],
        };
        let root = tempfile::tempdir().unwrap();
        let savepoint = storage
            .write_savepoint(&metadata, &StatePath::from(root.path()))
            .unwrap();
        fs::remove_dir_all(local_dir(storage.job_dir().clone())).unwrap();
        let restored = CheckpointStorage::load_dir(savepoint.as_local().unwrap()).unwrap();
        assert!(
            restored.metadata.operators[0]
                .files
                .iter()
                .all(|f| !f.shared)
        );
        assert_eq!(
            rows(&restored),
            vec![(0, 1), (1, 2), (1, 3), (2, 40), (3, 5)]
        );
    }

    #[test]
    fn without_incremental_a_sliced_table_is_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let storage = CheckpointStorage::new(dir.path(), &JobId("job".into()), 1);
        complete(&storage, 1, &sliced(FULL, None, &[])).unwrap();
        let restored = storage.load_latest().unwrap().unwrap();
        assert_eq!(restored.metadata.operators[0].files.len(), 1);
        assert!(!local_dir(storage.shared_dir()).exists());
        assert_eq!(rows(&restored), FULL);
        assert!(complete(&storage, 2, &sliced(&[], Some(1), &[0])).is_err());
    }
}
