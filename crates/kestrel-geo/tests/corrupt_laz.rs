//! A LAZ whose chunk table declares an absurd number of chunks is refused with a clear error
//! instead of aborting the process on a huge allocation (a fuzzing find).

use kestrel_geo::pointcloud::synthetic::write_synthetic_cloud;
use kestrel_geo::pointcloud::PointCloud;

#[test]
fn absurd_chunk_count_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.laz");
    write_synthetic_cloud(&path, 500, 20.0, 1).unwrap();
    assert_eq!(PointCloud::open(&path).unwrap().point_count(), 500);
    let mut bytes = std::fs::read(&path).unwrap();
    let data_start = u32::from_le_bytes(bytes[96..100].try_into().unwrap()) as usize;
    let table = i64::from_le_bytes(bytes[data_start..data_start + 8].try_into().unwrap()) as usize;
    bytes[table + 4..table + 8].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    let bad = dir.path().join("bad.laz");
    std::fs::write(&bad, &bytes).unwrap();
    let err = PointCloud::open(&bad)
        .err()
        .expect("must be refused")
        .to_string();
    assert!(
        err.contains("bad.laz") && err.contains("chunk table"),
        "{err}"
    );
    let err = PointCloud::from_bytes("mem.laz", bytes)
        .err()
        .expect("must be refused")
        .to_string();
    assert!(
        err.contains("mem.laz") && err.contains("chunk table"),
        "{err}"
    );
}

#[test]
fn laszip_vlr_without_items_is_a_clear_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.laz");
    write_synthetic_cloud(&path, 200, 20.0, 2).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    // The LASzip VLR: 54-byte VLR header (user id at +2), then the LASzip record, whose item
    // count is the u16 at +34. The laz decoder asserts that it is not zero.
    let at = bytes
        .windows(14)
        .position(|w| w == b"laszip encoded")
        .expect("LASzip VLR")
        - 2;
    let items = at + 54 + 34;
    bytes[items..items + 2].copy_from_slice(&0u16.to_le_bytes());
    let bad = dir.path().join("no_items.laz");
    std::fs::write(&bad, &bytes).unwrap();
    let result = PointCloud::open(&bad).and_then(|mut pc| pc.summarize(|_| {}).map(|_| ()));
    let err = result.expect_err("must be refused").to_string();
    assert!(err.contains("no_items.laz"), "{err}");
}
