//! Tests of [`super`]: Java's packing, min-count and entry-status rules on real Avro
//! manifests.

use iceberg::spec::{
    DataContentType, DataFile, DataFileBuilder, DataFileFormat, Literal, Manifest, NestedField,
    PrimitiveType, Schema, SortOrder, Struct, TableMetadataBuilder, Transform, Type,
    UnboundPartitionSpec,
};

use super::*;

/// The snapshot being committed.
const SNAP: i64 = 1000;

/// A table's metadata (v2 unless said otherwise) with two partition specs: 0
/// unpartitioned, 1 identity on `id`. Only its specs, schema, format and properties
/// matter to merging.
fn table(root: &str, version: FormatVersion, props: &[(&str, &str)]) -> TableMetadata {
    let schema = Schema::builder()
        .with_fields(vec![
            NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
            NestedField::optional(2, "name", Type::Primitive(PrimitiveType::String)).into(),
        ])
        .build()
        .expect("schema");
    let by_id = UnboundPartitionSpec::builder()
        .add_partition_field(1, "id_part", Transform::Identity)
        .expect("field")
        .build();
    let metadata = TableMetadataBuilder::new(
        schema,
        UnboundPartitionSpec::builder().build(),
        SortOrder::unsorted_order(),
        root.to_string(),
        version,
        props
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
    .expect("builder")
    .add_partition_spec(by_id)
    .expect("spec 1")
    .build()
    .expect("metadata")
    .metadata;
    assert!(metadata.partition_spec_by_id(0).is_some());
    assert!(metadata.partition_spec_by_id(1).is_some());
    metadata
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: String,
    io: FileIO,
    metadata: TableMetadata,
}

fn fixture(props: &[(&str, &str)]) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_str().expect("utf-8 path").to_string();
    let metadata = table(&root, FormatVersion::V2, props);
    Fixture {
        _dir: dir,
        root,
        io: FileIO::new_with_fs(),
        metadata,
    }
}

/// How an input manifest lists a file.
enum E<'a> {
    /// Added by the manifest's snapshot (sequence numbers inherited).
    Added(&'a str),
    /// Existing: added by snapshot `.1` at sequence number `.2`.
    Existing(&'a str, i64, i64),
    /// Deleted by the manifest's snapshot; added at sequence number `.1`.
    Deleted(&'a str, i64),
}

fn data_file(name: &str, spec_id: i32, content: DataContentType) -> DataFile {
    let partition = if spec_id == 0 {
        Struct::empty()
    } else {
        Struct::from_iter([Some(Literal::long(7))])
    };
    DataFileBuilder::default()
        .content(content)
        .file_path(format!("s3://bucket/data/{name}.parquet"))
        .file_format(DataFileFormat::Parquet)
        .partition(partition)
        .partition_spec_id(spec_id)
        .record_count(10)
        .file_size_in_bytes(1000)
        .build()
        .expect("data file")
}

/// Writes manifest `name` of `snapshot` (spec `spec_id`) listing `entries`; `seq` is the
/// sequence number its manifest list gave it (`None`: written by [`SNAP`], not yet
/// committed).
async fn manifest(
    fx: &Fixture,
    name: &str,
    spec_id: i32,
    snapshot: i64,
    seq: Option<i64>,
    entries: &[E<'_>],
) -> ManifestFile {
    manifest_of(
        fx,
        name,
        spec_id,
        snapshot,
        seq,
        entries,
        DataContentType::Data,
    )
    .await
}

async fn manifest_of(
    fx: &Fixture,
    name: &str,
    spec_id: i32,
    snapshot: i64,
    seq: Option<i64>,
    entries: &[E<'_>],
    content: DataContentType,
) -> ManifestFile {
    let spec = fx.metadata.partition_spec_by_id(spec_id).expect("spec");
    let path = format!("{}/metadata/in-{name}.avro", fx.root);
    let builder = ManifestWriterBuilder::new(
        fx.io.new_output(&path).expect("output"),
        Some(snapshot),
        fx.metadata.current_schema().clone(),
        spec.as_ref().clone(),
    );
    let mut writer = if content == DataContentType::Data {
        builder.build_v2_data()
    } else {
        builder.build_v2_deletes()
    };
    for entry in entries {
        match *entry {
            E::Added(f) => writer.add_file(data_file(f, spec_id, content), -1),
            E::Existing(f, by, s) => {
                writer.add_existing_file(data_file(f, spec_id, content), by, s, Some(s))
            }
            E::Deleted(f, s) => writer.add_delete_file(data_file(f, spec_id, content), s, Some(s)),
        }
        .expect("add");
    }
    let mut file = writer.write_manifest_file().await.expect("write manifest");
    if let Some(seq) = seq {
        // What the manifest list that committed it says.
        file.sequence_number = seq;
        if file.min_sequence_number == UNASSIGNED_SEQUENCE_NUMBER {
            file.min_sequence_number = seq;
        }
    }
    file
}

/// An older manifest (snapshot `n`, sequence number `n`) adding one file.
async fn older(fx: &Fixture, n: i64, file: &'static str) -> ManifestFile {
    manifest(fx, &format!("p{n}"), 0, n, Some(n), &[E::Added(file)]).await
}

/// The new manifest of [`SNAP`] adding one file.
async fn newest(fx: &Fixture, file: &'static str) -> ManifestFile {
    manifest(fx, "n0", 0, SNAP, None, &[E::Added(file)]).await
}

/// Runs `merger` for [`SNAP`] (or `snapshot_id`); also returns how many paths it asked for.
async fn run_for(
    merger: &mut ManifestMerger,
    fx: &Fixture,
    snapshot_id: i64,
    input: &[ManifestFile],
) -> (Vec<ManifestFile>, usize) {
    let mut asked = 0;
    let out = merger
        .merge(&fx.io, &fx.metadata, snapshot_id, input.to_vec(), || {
            asked += 1;
            format!(
                "{}/metadata/{}-m{asked}.avro",
                fx.root,
                uuid::Uuid::new_v4()
            )
        })
        .await
        .expect("merge");
    (out, asked)
}

async fn run(
    merger: &mut ManifestMerger,
    fx: &Fixture,
    input: &[ManifestFile],
) -> (Vec<ManifestFile>, usize) {
    run_for(merger, fx, SNAP, input).await
}

fn merger(fx: &Fixture) -> ManifestMerger {
    ManifestMerger::new(MergePolicy::from_properties(fx.metadata.properties()).expect("policy"))
}

fn paths(manifests: &[ManifestFile]) -> Vec<&str> {
    manifests.iter().map(|m| m.manifest_path.as_str()).collect()
}

/// The files a manifest lists (short names), in order.
async fn files(fx: &Fixture, manifest: &ManifestFile) -> Vec<String> {
    let loaded = manifest.load_manifest(&fx.io).await.expect("load");
    loaded
        .entries()
        .iter()
        .map(|e| {
            e.file_path()
                .trim_start_matches("s3://bucket/data/")
                .trim_end_matches(".parquet")
                .to_string()
        })
        .collect()
}

fn is_merged(merger: &ManifestMerger, manifest: &ManifestFile) -> bool {
    merger.wrote(&manifest.manifest_path)
}

#[test]
fn pack_end_fills_bins_from_the_oldest_end() {
    // Equal weights: the under-filled bin is the newest (first) one.
    assert_eq!(pack_end(&[1, 1, 1, 1, 1], 2), vec![0..1, 1..3, 3..5]);
    assert_eq!(pack_end(&[1, 1, 1, 1], 2), vec![0..2, 2..4]);
    assert_eq!(pack_end(&[1, 1, 1], 10), vec![0..3]);
    // A manifest heavier than the target gets a bin of its own; lookback 1 means the
    // bin it interrupts is closed (order is never changed).
    assert_eq!(pack_end(&[1, 5, 1, 1], 2), vec![0..1, 1..2, 2..4]);
    assert_eq!(pack_end(&[1, 1, 5, 1], 2), vec![0..2, 2..3, 3..4]);
    assert_eq!(pack_end(&[3, 3], 2), vec![0..1, 1..2]);
    // Exactly the target fits; a target of 0 (or less) packs nothing together.
    assert_eq!(pack_end(&[2, 1, 1], 2), vec![0..1, 1..3]);
    assert_eq!(pack_end(&[1, 1, 1], 0), vec![0..1, 1..2, 2..3]);
    assert_eq!(pack_end(&[], 2), Vec::<Range<usize>>::new());
    // No overflow near i64::MAX.
    assert_eq!(pack_end(&[i64::MAX, i64::MAX], i64::MAX), vec![0..1, 1..2]);
}

#[test]
fn policy_from_properties() {
    let props = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        MergePolicy::from_properties(&HashMap::new()).expect("defaults"),
        MergePolicy {
            enabled: true,
            min_count_to_merge: 100,
            target_size_bytes: 8_388_608,
        }
    );
    assert_eq!(
        MergePolicy::default(),
        MergePolicy::from_properties(&props(&[])).unwrap()
    );
    assert_eq!(
        MergePolicy::from_properties(&props(&[
            (MANIFEST_MERGE_ENABLED_PROPERTY, "FALSE"),
            (MANIFEST_MIN_COUNT_TO_MERGE_PROPERTY, "5"),
            (MANIFEST_TARGET_SIZE_BYTES_PROPERTY, "1024"),
        ]))
        .expect("parsed"),
        MergePolicy {
            enabled: false,
            min_count_to_merge: 5,
            target_size_bytes: 1024,
        }
    );
    for (key, value) in [
        (MANIFEST_MERGE_ENABLED_PROPERTY, "yes"),
        (MANIFEST_MIN_COUNT_TO_MERGE_PROPERTY, "ten"),
        (MANIFEST_MIN_COUNT_TO_MERGE_PROPERTY, "3000000000"),
        (MANIFEST_TARGET_SIZE_BYTES_PROPERTY, "8MB"),
        (MANIFEST_TARGET_SIZE_BYTES_PROPERTY, ""),
    ] {
        let err = MergePolicy::from_properties(&props(&[(key, value)]))
            .expect_err("a bad value is refused");
        match &err {
            Error::Config { key: k, reason } => {
                assert_eq!(k, key);
                assert!(reason.contains(&format!("`{value}`")), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains(key), "{err}");
    }
}

/// With a small target, manifests are packed from the oldest end: the newest bin is the
/// under-filled one (here the new manifest alone, kept); full bins of older manifests
/// are merged, in order.
#[tokio::test]
async fn small_target_packs_from_the_oldest_end() {
    let mut fx = fixture(&[]);
    let input = vec![
        newest(&fx, "a").await,
        older(&fx, 4, "p").await,
        older(&fx, 3, "q").await,
        older(&fx, 2, "r").await,
        older(&fx, 1, "s").await,
    ];
    let lengths: Vec<i64> = input.iter().map(|m| m.manifest_length).collect();
    let (min, max) = (
        *lengths.iter().min().unwrap(),
        *lengths.iter().max().unwrap(),
    );
    // Any two fit in the target, no three do.
    assert!(3 * min > 2 * max, "{lengths:?}");
    fx.metadata = table(
        &fx.root,
        FormatVersion::V2,
        &[(MANIFEST_TARGET_SIZE_BYTES_PROPERTY, &(2 * max).to_string())],
    );
    let mut merger = merger(&fx);
    let (out, asked) = run(&mut merger, &fx, &input).await;
    assert_eq!(asked, 2);
    assert_eq!(out.len(), 3);
    assert_eq!(out[0], input[0]);
    assert!(is_merged(&merger, &out[1]) && is_merged(&merger, &out[2]));
    assert_eq!(files(&fx, &out[1]).await, ["p", "q"]);
    assert_eq!(files(&fx, &out[2]).await, ["r", "s"]);
    for m in &out[1..] {
        assert_eq!(m.added_snapshot_id, SNAP);
        assert_eq!(m.partition_spec_id, 0);
        assert_eq!(m.sequence_number, UNASSIGNED_SEQUENCE_NUMBER);
        assert_eq!(m.existing_files_count, Some(2));
        assert_eq!(m.added_files_count, Some(0));
    }
    assert_eq!(merger.written(), paths(&out[1..]));
}

/// The bin holding the new manifest merges only from `min-count-to-merge` manifests on;
/// any other bin of two or more always merges; a bin of one stays.
#[tokio::test]
async fn min_count_applies_to_the_newest_bin_only() {
    let fx = fixture(&[]);
    let input = vec![
        newest(&fx, "a").await,
        older(&fx, 3, "p").await,
        older(&fx, 2, "q").await,
        older(&fx, 1, "r").await,
    ];
    // One bin (8 MiB target) of 4 manifests.
    for (min_count, merged) in [(5, false), (100, false), (4, true), (1, true)] {
        let policy = MergePolicy {
            min_count_to_merge: min_count,
            ..MergePolicy::default()
        };
        let mut merger = ManifestMerger::new(policy);
        let (out, asked) = run(&mut merger, &fx, &input).await;
        if merged {
            assert_eq!(asked, 1, "min count {min_count}");
            assert_eq!(out.len(), 1);
            assert_eq!(files(&fx, &out[0]).await, ["a", "p", "q", "r"]);
            assert_eq!(out[0].added_files_count, Some(1));
            assert_eq!(out[0].existing_files_count, Some(3));
        } else {
            assert_eq!(asked, 0, "min count {min_count}");
            assert_eq!(out, input);
            assert!(merger.written().is_empty());
        }
    }

    // Bins [a, p] [big] [q, r]: the newest bin is kept (2 < 100), the single big
    // manifest is kept, the older bin merges.
    let names: Vec<String> = (0..300).map(|i| format!("big{i:03}")).collect();
    let many: Vec<E<'_>> = names.iter().map(|n| E::Added(n)).collect();
    let big = manifest(&fx, "big", 0, 2, Some(2), &many).await;
    let input = vec![
        newest(&fx, "a").await,
        older(&fx, 4, "p").await,
        big,
        older(&fx, 3, "q").await,
        older(&fx, 1, "r").await,
    ];
    let small = input
        .iter()
        .filter(|m| !m.manifest_path.ends_with("in-big.avro"))
        .map(|m| m.manifest_length)
        .max()
        .unwrap();
    assert!(input[2].manifest_length > 2 * small);
    let mut merger = ManifestMerger::new(MergePolicy {
        target_size_bytes: 2 * small,
        ..MergePolicy::default()
    });
    let (out, asked) = run(&mut merger, &fx, &input).await;
    assert_eq!(asked, 1);
    assert_eq!(out.len(), 4);
    assert_eq!(out[..3], input[..3]);
    assert!(is_merged(&merger, &out[3]));
    assert_eq!(files(&fx, &out[3]).await, ["q", "r"]);
}

/// Entry statuses in a merged manifest: this snapshot's adds stay added (sequence numbers
/// still inherited), its deletes stay deleted, earlier deletes are dropped, the rest is
/// existing with snapshot id and sequence numbers kept.
#[tokio::test]
async fn merged_entries_keep_java_statuses() {
    let fx = fixture(&[(MANIFEST_MIN_COUNT_TO_MERGE_PROPERTY, "1")]);
    let input = vec![
        // This snapshot: adds `a`, deletes `x` (added at sequence number 1).
        manifest(
            &fx,
            "n0",
            0,
            SNAP,
            None,
            &[E::Added("a"), E::Deleted("x", 1)],
        )
        .await,
        // Snapshot 2 (sequence number 2): `z` existing from snapshot 1, `w` deleted,
        // `v` added.
        manifest(
            &fx,
            "p2",
            0,
            2,
            Some(2),
            &[E::Existing("z", 1, 1), E::Deleted("w", 1), E::Added("v")],
        )
        .await,
        // Snapshot 1 (sequence number 1): adds `y`.
        manifest(&fx, "p1", 0, 1, Some(1), &[E::Added("y")]).await,
    ];
    let mut merger = merger(&fx);
    let (out, asked) = run(&mut merger, &fx, &input).await;
    assert_eq!(asked, 1);
    assert_eq!(out.len(), 1);
    let merged = &out[0];
    assert_eq!(merged.added_snapshot_id, SNAP);
    assert_eq!(merged.sequence_number, UNASSIGNED_SEQUENCE_NUMBER);
    assert_eq!(merged.min_sequence_number, 1);
    assert_eq!(
        (
            merged.added_files_count,
            merged.existing_files_count,
            merged.deleted_files_count
        ),
        (Some(1), Some(3), Some(1))
    );

    // As written (no inheritance): `a` has no sequence numbers, for the manifest list to
    // give it this snapshot's.
    let bytes = fx
        .io
        .new_input(&merged.manifest_path)
        .unwrap()
        .read()
        .await
        .unwrap();
    let raw = Manifest::parse_avro(&bytes).expect("parse");
    let raw_a = &raw.entries()[0];
    assert_eq!(raw_a.status(), ManifestStatus::Added);
    assert_eq!(raw_a.sequence_number(), None);
    assert_eq!(raw_a.file_sequence_number, None);

    // As read once committed at sequence number 3.
    let mut committed = merged.clone();
    committed.sequence_number = 3;
    let loaded = committed.load_manifest(&fx.io).await.expect("load");
    /// File, status, snapshot id, data and file sequence numbers.
    type Row = (
        String,
        ManifestStatus,
        Option<i64>,
        Option<i64>,
        Option<i64>,
    );
    let got: Vec<Row> = loaded
        .entries()
        .iter()
        .map(|e| {
            (
                e.file_path()
                    .trim_start_matches("s3://bucket/data/")
                    .trim_end_matches(".parquet")
                    .to_string(),
                e.status(),
                e.snapshot_id(),
                e.sequence_number(),
                e.file_sequence_number,
            )
        })
        .collect();
    use ManifestStatus::{Added, Deleted, Existing};
    let want = [
        ("a", Added, Some(SNAP), Some(3), Some(3)),
        ("x", Deleted, Some(SNAP), Some(1), Some(1)),
        ("z", Existing, Some(1), Some(1), Some(1)),
        ("v", Existing, Some(2), Some(2), Some(2)),
        ("y", Existing, Some(1), Some(1), Some(1)),
    ];
    let want: Vec<Row> = want
        .into_iter()
        .map(|(f, s, id, seq, fseq)| (f.to_string(), s, id, seq, fseq))
        .collect();
    assert_eq!(got, want);
    assert_eq!(loaded.metadata().partition_spec().spec_id(), 0);
}

/// Manifests of two specs are never merged together; the highest spec id comes first;
/// delete manifests pass through after the data ones.
#[tokio::test]
async fn groups_by_spec_highest_first_and_passes_deletes_through() {
    let fx = fixture(&[]);
    let deletes = manifest_of(
        &fx,
        "d",
        0,
        2,
        Some(2),
        &[E::Added("pos-del")],
        DataContentType::PositionDeletes,
    )
    .await;
    assert_eq!(deletes.content, ManifestContentType::Deletes);
    let input = vec![
        newest(&fx, "a").await,
        deletes.clone(),
        manifest(&fx, "q2", 1, 2, Some(2), &[E::Added("q2")]).await,
        older(&fx, 1, "p1").await,
        manifest(&fx, "q1", 1, 1, Some(1), &[E::Added("q1")]).await,
    ];
    let mut merger = merger(&fx);
    let (out, asked) = run(&mut merger, &fx, &input).await;
    // Spec 1: [q2, q1] merged (it does not hold the new manifest); spec 0: [a, p1]
    // kept (2 < 100); then the delete manifest.
    assert_eq!(asked, 1);
    assert_eq!(out.len(), 4);
    assert!(is_merged(&merger, &out[0]));
    assert_eq!(out[0].partition_spec_id, 1);
    assert_eq!(files(&fx, &out[0]).await, ["q2", "q1"]);
    let loaded = out[0].load_manifest(&fx.io).await.expect("load");
    assert_eq!(loaded.metadata().partition_spec().spec_id(), 1);
    assert_eq!(
        loaded.entries()[0].data_file().partition(),
        &Struct::from_iter([Some(Literal::long(7))])
    );
    assert_eq!(out[1], input[0]);
    assert_eq!(out[2], input[3]);
    assert_eq!(out[3], deletes);

    // With every bin merging: one manifest per spec, never one for both.
    let mut merger = ManifestMerger::new(MergePolicy {
        min_count_to_merge: 1,
        ..MergePolicy::default()
    });
    let (out, asked) = run(&mut merger, &fx, &input).await;
    assert_eq!(asked, 2);
    assert_eq!(
        out.iter().map(|m| m.partition_spec_id).collect::<Vec<_>>(),
        [1, 0, 0]
    );
    assert_eq!(files(&fx, &out[1]).await, ["a", "p1"]);
    assert_eq!(out[2], deletes);
}

/// A retry with the same bins reuses the merged manifests (no new file); a merged
/// manifest is tied to its snapshot id; `take_unused` hands back what the landing
/// attempt does not use.
#[tokio::test]
async fn merged_manifests_are_reused_across_attempts() {
    let fx = fixture(&[]);
    let input = vec![
        newest(&fx, "a").await,
        older(&fx, 2, "p").await,
        older(&fx, 1, "q").await,
    ];
    let mut merger = ManifestMerger::new(MergePolicy {
        min_count_to_merge: 2,
        ..MergePolicy::default()
    });
    let metadata_dir = format!("{}/metadata", fx.root);
    let count = || std::fs::read_dir(&metadata_dir).unwrap().count();

    let (first, asked) = run(&mut merger, &fx, &input).await;
    assert_eq!(asked, 1);
    assert_eq!(first.len(), 1);
    let before = count();
    let (second, asked) = run(&mut merger, &fx, &input).await;
    assert_eq!(asked, 0);
    assert_eq!(second, first);
    assert_eq!(count(), before);
    assert_eq!(merger.written(), paths(&first));

    // A different snapshot id is a different merge (of the older manifests: for another
    // snapshot, the new manifest would be a committed one without sequence numbers,
    // which is refused, its path still reported as written).
    let older = &input[1..];
    let (mine, asked) = run(&mut merger, &fx, older).await;
    assert_eq!(asked, 1);
    let (other, asked) = run_for(&mut merger, &fx, SNAP + 1, older).await;
    assert_eq!(asked, 1);
    assert_ne!(paths(&other), paths(&mine));
    assert_eq!(other[0].added_snapshot_id, SNAP + 1);
    let mut failed_path = String::new();
    let err = merger
        .merge(&fx.io, &fx.metadata, SNAP + 1, input.clone(), || {
            failed_path = format!("{}/metadata/failed-m0.avro", fx.root);
            failed_path.clone()
        })
        .await
        .expect_err("an added entry of another snapshot without sequence number");
    assert!(err.to_string().contains("no sequence number"), "{err}");
    let mut written = paths(&first);
    written.extend(paths(&mine));
    written.extend(paths(&other));
    written.push(&failed_path);
    assert_eq!(merger.written(), written);

    // The attempt with `first` landed: the others are unused.
    assert_eq!(merger.take_unused(&first), written[1..]);
    assert_eq!(merger.written(), paths(&first));
    assert!(merger.take_unused(&first).is_empty());
    // Still cached for the snapshot that landed; forgotten once unused.
    let (again, asked) = run(&mut merger, &fx, &input).await;
    assert_eq!((asked, &again), (0, &first));
    assert_eq!(merger.take_unused(&[]), paths(&first));
    assert!(merger.written().is_empty());
    let (_, asked) = run(&mut merger, &fx, &input).await;
    assert_eq!(asked, 1);
}

/// Merging disabled (or a table that is not v2): the manifests come back as they are.
#[tokio::test]
async fn disabled_or_not_v2_leaves_the_manifests() {
    let mut fx = fixture(&[
        (MANIFEST_MERGE_ENABLED_PROPERTY, "false"),
        (MANIFEST_MIN_COUNT_TO_MERGE_PROPERTY, "1"),
    ]);
    let input = vec![
        newest(&fx, "a").await,
        older(&fx, 2, "p").await,
        older(&fx, 1, "q").await,
    ];
    let mut disabled = merger(&fx);
    assert!(!disabled.policy().enabled);
    let (out, asked) = run(&mut disabled, &fx, &input).await;
    assert_eq!((asked, &out), (0, &input));
    assert!(disabled.written().is_empty());

    fx.metadata = table(
        &fx.root,
        FormatVersion::V1,
        &[(MANIFEST_MIN_COUNT_TO_MERGE_PROPERTY, "1")],
    );
    let mut v1 = merger(&fx);
    assert!(v1.policy().enabled);
    let (out, asked) = run(&mut v1, &fx, &input).await;
    assert_eq!((asked, &out), (0, &input));
}
