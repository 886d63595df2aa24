//! Where checkpoint files live: the seam between the checkpoint layout
//! ([`super::CheckpointStorage`]) and the storage that holds the bytes.
//!
//! A [`StatePath`] is a local path or an object-store URL (`s3://bucket/prefix`). A
//! [`StateStore`] reads and writes whole files under such paths; [`LocalStore`] is the local
//! file system, kept here with the layout and guarantees checkpoints always had (files synced,
//! `_metadata` published by rename). Object stores are implemented outside the engine (the
//! coordinator's `s3://` store on `object_store`) and reach it through [`ObjectStores`], which
//! a process registers in [`StateStores`] together with the `s3.*` settings
//! ([`S3Config`]). The engine itself never opens a network connection.
//!
//! Stores are synchronous: the checkpoint writer threads, the local runtime's checkpoint
//! thread and the coordinator's `spawn_blocking` calls use them. An implementation over an
//! async client runs its requests on a runtime of its own and must not need the caller's.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::config::S3Config;
use crate::{Error, Result};

/// URL schemes of object stores a checkpoint directory may name.
pub const OBJECT_SCHEMES: &[&str] = &["s3"];

/// A file or directory of checkpoint storage: a local path, or a location in an object store.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StatePath {
    Local(PathBuf),
    Object(ObjectUrl),
}

/// `scheme://bucket/key` of an object store. The key has no leading or trailing `/` and no
/// empty segments; an empty key is the bucket's root.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectUrl {
    scheme: String,
    bucket: String,
    key: String,
}

impl ObjectUrl {
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The object key (a "directory" is a key prefix; its objects are `<key>/<name>`).
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl fmt::Display for ObjectUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.bucket)?;
        if !self.key.is_empty() {
            write!(f, "/{}", self.key)?;
        }
        Ok(())
    }
}

impl StatePath {
    /// Parses a checkpoint or savepoint location as Flink writes one: a local path, a `file://`
    /// URI (`file:///tmp/chk`, `file:/tmp/chk`) or an object-store URL (`s3://bucket/prefix`).
    /// The error says what is wrong, for the caller to name its option.
    pub fn parse(value: &str) -> std::result::Result<StatePath, String> {
        if let Some(rest) = value.strip_prefix("file:") {
            let path = match rest.strip_prefix("//") {
                // `file:///abs` (empty authority) or `file://localhost/abs`.
                Some(authority_and_path) => match authority_and_path.find('/') {
                    Some(slash) if matches!(&authority_and_path[..slash], "" | "localhost") => {
                        &authority_and_path[slash..]
                    }
                    _ => {
                        return Err(
                            "a file:// URI must name a local absolute path (file:///path)".into(),
                        );
                    }
                },
                None => rest,
            };
            return Self::local(path);
        }
        let Some((scheme, rest)) = value.split_once("://") else {
            return Self::local(value);
        };
        let scheme = scheme.to_ascii_lowercase();
        if !OBJECT_SCHEMES.contains(&scheme.as_str()) {
            return Err(format!(
                "scheme '{scheme}://' is not supported: use a local path, file:// or s3://"
            ));
        }
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!(
                "{scheme}:// needs a bucket: {scheme}://bucket/prefix"
            ));
        }
        let key: Vec<&str> = key.split('/').filter(|s| !s.is_empty()).collect();
        Ok(StatePath::Object(ObjectUrl {
            scheme,
            bucket: bucket.to_string(),
            key: key.join("/"),
        }))
    }

    fn local(path: &str) -> std::result::Result<StatePath, String> {
        if path.is_empty() {
            return Err("the directory is empty".into());
        }
        Ok(StatePath::Local(PathBuf::from(path)))
    }

    /// `name` (one or more `/`-separated segments) inside this directory.
    pub fn join(&self, name: &str) -> StatePath {
        match self {
            StatePath::Local(path) => StatePath::Local(path.join(name)),
            StatePath::Object(url) => {
                let name = name.trim_matches('/');
                let key = if url.key.is_empty() {
                    name.to_string()
                } else if name.is_empty() {
                    url.key.clone()
                } else {
                    format!("{}/{name}", url.key)
                };
                StatePath::Object(ObjectUrl { key, ..url.clone() })
            }
        }
    }

    /// The directory holding this path; `None` at a root.
    pub fn parent(&self) -> Option<StatePath> {
        match self {
            StatePath::Local(path) => path.parent().map(|p| StatePath::Local(p.to_path_buf())),
            StatePath::Object(url) if url.key.is_empty() => None,
            StatePath::Object(url) => {
                let key = url.key.rsplit_once('/').map_or("", |(parent, _)| parent);
                Some(StatePath::Object(ObjectUrl {
                    key: key.to_string(),
                    ..url.clone()
                }))
            }
        }
    }

    /// The local path, when this is one.
    pub fn as_local(&self) -> Option<&Path> {
        match self {
            StatePath::Local(path) => Some(path),
            StatePath::Object(_) => None,
        }
    }

    /// Whether both paths are served by the same kind of store (the local file system, or
    /// object stores of the same scheme), so that one store can copy between them.
    pub fn same_store(&self, other: &StatePath) -> bool {
        match (self, other) {
            (StatePath::Local(_), StatePath::Local(_)) => true,
            (StatePath::Object(a), StatePath::Object(b)) => a.scheme == b.scheme,
            _ => false,
        }
    }
}

impl fmt::Display for StatePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatePath::Local(path) => write!(f, "{}", path.display()),
            StatePath::Object(url) => url.fmt(f),
        }
    }
}

/// Written as its text (`/tmp/chk`, `s3://bucket/prefix`), as a path was.
impl serde::Serialize for StatePath {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for StatePath {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        StatePath::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl From<PathBuf> for StatePath {
    fn from(path: PathBuf) -> Self {
        StatePath::Local(path)
    }
}

impl From<&PathBuf> for StatePath {
    fn from(path: &PathBuf) -> Self {
        StatePath::Local(path.clone())
    }
}

impl From<&Path> for StatePath {
    fn from(path: &Path) -> Self {
        StatePath::Local(path.to_path_buf())
    }
}

/// What a directory listing holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Directory,
}

/// One entry of a directory listing: a name (no `/`) and whether it is a file or a
/// directory (on an object store: a common key prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreEntry {
    pub name: String,
    pub kind: EntryKind,
}

/// Reads and writes whole checkpoint files.
///
/// Every call may block on I/O (a disk, or a network round trip to an object store) and is
/// made from a plain thread: a checkpoint writer thread, the local runtime's checkpoint
/// thread, or a `spawn_blocking` task; never from a slot thread's hot path. Paths are those
/// of the store's kind ([`StatePath::same_store`]); another kind is an internal error.
/// Errors name the operation and the path; [`Error::is_retryable`] tells a transient
/// failure (a lost connection) from a lasting one (denied, not found).
pub trait StateStore: Send + Sync + fmt::Debug {
    /// Writes `bytes` as the whole file at `path`, replacing any; the file is durable when
    /// this returns. A reader may see a partly written file only if the writer crashed, which
    /// the checksums in `_metadata` catch.
    fn put(&self, path: &StatePath, bytes: Vec<u8>) -> Result<()>;

    /// Writes the file at `path` so that a reader sees either all of `bytes` or no file (a
    /// checkpoint's `_metadata`, whose presence marks the checkpoint completed).
    fn publish(&self, path: &StatePath, bytes: Vec<u8>) -> Result<()>;

    /// The whole file at `path`; a missing file is an error naming it.
    fn get(&self, path: &StatePath) -> Result<Vec<u8>>;

    /// The size of the file at `path`; `None` when there is none.
    fn size(&self, path: &StatePath) -> Result<Option<u64>>;

    /// The direct children of directory `dir`, in no particular order; empty when it does not
    /// exist.
    fn list(&self, dir: &StatePath) -> Result<Vec<StoreEntry>>;

    /// Deletes the file at `path`; a missing file is not an error.
    fn delete(&self, path: &StatePath) -> Result<()>;

    /// Deletes directory `dir` and everything in it; a missing directory is not an error.
    fn delete_dir(&self, dir: &StatePath) -> Result<()>;

    /// Copies the file `from` to `to` (durable when this returns).
    fn copy(&self, from: &StatePath, to: &StatePath) -> Result<()>;

    /// Moves the file `from` to `to` where that is cheap, else copies it (the source may
    /// stay; callers delete its directory afterwards).
    fn rename(&self, from: &StatePath, to: &StatePath) -> Result<()> {
        self.copy(from, to)
    }
}

/// Opens stores for object-store URLs; implemented outside the engine (the `sluice`
/// executable registers an `s3://` implementation).
pub trait ObjectStores: Send + Sync + fmt::Debug {
    /// A store for the paths of `url`'s scheme (any bucket), configured by `config` (unset
    /// fields come from the process's environment, e.g. `AWS_ACCESS_KEY_ID`). Cheap enough
    /// to call once per job and per restore; it opens no connection yet.
    fn open(&self, url: &ObjectUrl, config: &S3Config) -> Result<Arc<dyn StateStore>>;
}

/// The stores a process can reach: the local file system always, object stores when an
/// [`ObjectStores`] implementation is registered, with the `s3.*` settings it opens them with.
#[derive(Clone, Default)]
pub struct StateStores {
    objects: Option<Arc<dyn ObjectStores>>,
    /// `s3.*` settings (`SET` in SQL, `-D` on the command line).
    pub s3: S3Config,
}

impl fmt::Debug for StateStores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateStores")
            .field("objects", &self.objects)
            .field("s3", &self.s3)
            .finish()
    }
}

impl StateStores {
    /// Object-store URLs are opened by `objects`.
    pub fn with_objects(mut self, objects: Arc<dyn ObjectStores>) -> Self {
        self.objects = Some(objects);
        self
    }

    pub fn with_s3(mut self, s3: S3Config) -> Self {
        self.s3 = s3;
        self
    }

    /// The store holding `path`. An object-store URL without a registered implementation is
    /// a configuration error naming the URL.
    pub fn store_for(&self, path: &StatePath) -> Result<Arc<dyn StateStore>> {
        match path {
            StatePath::Local(_) => Ok(Arc::new(LocalStore)),
            StatePath::Object(url) => match &self.objects {
                Some(objects) => objects.open(url, &self.s3),
                None => Err(Error::Config {
                    key: "execution.checkpointing.dir".into(),
                    value: url.to_string(),
                    message: format!(
                        "no {}:// storage in this process (the engine alone writes local \
                         directories; the sluice executable adds s3://)",
                        url.scheme()
                    ),
                }),
            },
        }
    }
}

/// The local file system: files are synced before a call returns, `publish` writes a
/// temporary `<name>.inprogress` file and renames it into place.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalStore;

/// The local path of `path`, or an internal error (a store was handed another kind's path).
fn local(path: &StatePath) -> Result<&Path> {
    path.as_local().ok_or_else(|| {
        Error::Internal(format!(
            "the local file store was handed {path}, which is not a local path"
        ))
    })
}

/// Creates the directory holding `path`.
fn create_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => {
            fs::create_dir_all(parent).map_err(|e| Error::io("create directory", parent, e))
        }
        _ => Ok(()),
    }
}

/// Writes `bytes` to a new file at `path` and syncs it.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = fs::File::create(path).map_err(|e| Error::io("create file", path, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io("write file", path, e))
}

impl StateStore for LocalStore {
    fn put(&self, path: &StatePath, bytes: Vec<u8>) -> Result<()> {
        let path = local(path)?;
        create_parent(path)?;
        write_synced(path, &bytes)
    }

    fn publish(&self, path: &StatePath, bytes: Vec<u8>) -> Result<()> {
        let target = local(path)?;
        create_parent(target)?;
        let mut temp = target.as_os_str().to_owned();
        temp.push(".inprogress");
        let temp = PathBuf::from(temp);
        write_synced(&temp, &bytes)?;
        fs::rename(&temp, target).map_err(|e| Error::io("publish file", target, e))
    }

    fn get(&self, path: &StatePath) -> Result<Vec<u8>> {
        let path = local(path)?;
        fs::read(path).map_err(|e| Error::io("read file", path, e))
    }

    fn size(&self, path: &StatePath) -> Result<Option<u64>> {
        let path = local(path)?;
        match fs::metadata(path) {
            Ok(metadata) => Ok(metadata.is_file().then_some(metadata.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("read file metadata", path, e)),
        }
    }

    fn list(&self, dir: &StatePath) -> Result<Vec<StoreEntry>> {
        let dir = local(dir)?;
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("list directory", dir, e)),
        };
        let mut listed = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("list directory", dir, e))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            // Follows symbolic links, as reading through the path does.
            let kind = if entry.path().is_dir() {
                EntryKind::Directory
            } else {
                EntryKind::File
            };
            listed.push(StoreEntry { name, kind });
        }
        Ok(listed)
    }

    fn delete(&self, path: &StatePath) -> Result<()> {
        let path = local(path)?;
        match fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io("delete file", path, e))
            }
            _ => Ok(()),
        }
    }

    fn delete_dir(&self, dir: &StatePath) -> Result<()> {
        let dir = local(dir)?;
        match fs::remove_dir_all(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io("delete directory", dir, e))
            }
            _ => Ok(()),
        }
    }

    fn copy(&self, from: &StatePath, to: &StatePath) -> Result<()> {
        let (from, to) = (local(from)?, local(to)?);
        create_parent(to)?;
        fs::copy(from, to).map_err(|e| Error::io("copy file", from, e))?;
        fs::File::open(to)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io("sync file", to, e))
    }

    fn rename(&self, from: &StatePath, to: &StatePath) -> Result<()> {
        let (local_from, local_to) = (local(from)?, local(to)?);
        create_parent(local_to)?;
        if fs::rename(local_from, local_to).is_ok() {
            return Ok(());
        }
        self.copy(from, to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_as_flink_writes_them() {
        let parse = |s: &str| StatePath::parse(s);
        assert_eq!(parse("/tmp/chk"), Ok(StatePath::Local("/tmp/chk".into())));
        assert_eq!(parse("rel/chk"), Ok(StatePath::Local("rel/chk".into())));
        assert_eq!(
            parse("file:///tmp/chk"),
            Ok(StatePath::Local("/tmp/chk".into()))
        );
        assert_eq!(
            parse("file://localhost/tmp/chk"),
            Ok(StatePath::Local("/tmp/chk".into()))
        );
        assert_eq!(
            parse("file:/tmp/chk"),
            Ok(StatePath::Local("/tmp/chk".into()))
        );
        assert!(parse("file://otherhost/chk").is_err());
        assert!(parse("").is_err());
        let url = parse("S3://bucket//a/b/").unwrap();
        assert_eq!(url.to_string(), "s3://bucket/a/b");
        assert_eq!(parse("s3://bucket").unwrap().to_string(), "s3://bucket");
        assert!(parse("s3:///key").unwrap_err().contains("bucket"));
        assert!(parse("gs://bucket/key").unwrap_err().contains("gs://"));
    }

    #[test]
    fn object_paths_join_and_split_by_slash() {
        let root = StatePath::parse("s3://b").unwrap();
        let file = root.join("job").join("chk-3/_metadata");
        assert_eq!(file.to_string(), "s3://b/job/chk-3/_metadata");
        let dir = file.parent().unwrap();
        assert_eq!(dir.to_string(), "s3://b/job/chk-3");
        assert_eq!(
            dir.parent().unwrap().parent().unwrap().to_string(),
            "s3://b"
        );
        assert_eq!(root.parent(), None);
        assert!(file.same_store(&root));
        assert!(!file.same_store(&StatePath::Local("/tmp".into())));
    }

    #[test]
    fn the_local_store_publishes_by_rename_and_tolerates_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = StatePath::from(dir.path());
        let store = LocalStore;
        let file = root.join("a/b/_metadata");
        store.publish(&file, b"{}".to_vec()).unwrap();
        assert_eq!(store.get(&file).unwrap(), b"{}");
        assert!(!dir.path().join("a/b/_metadata.inprogress").exists());
        assert_eq!(store.size(&file).unwrap(), Some(2));
        assert_eq!(store.size(&root.join("a/b")).unwrap(), None, "a directory");
        assert_eq!(
            store.list(&root.join("a")).unwrap(),
            vec![StoreEntry {
                name: "b".into(),
                kind: EntryKind::Directory
            }]
        );
        assert!(store.list(&root.join("nowhere")).unwrap().is_empty());
        assert!(store.get(&root.join("nowhere")).is_err());
        store.delete(&root.join("nowhere")).unwrap();
        store.delete_dir(&root.join("a")).unwrap();
        store.delete_dir(&root.join("a")).unwrap();
        assert_eq!(store.size(&file).unwrap(), None);
    }

    #[test]
    fn object_urls_need_a_registered_store() {
        let error = StateStores::default()
            .store_for(&StatePath::parse("s3://b/chk").unwrap())
            .unwrap_err()
            .to_string();
        assert!(error.contains("s3://b/chk"), "{error}");
    }
}
