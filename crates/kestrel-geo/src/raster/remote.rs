//! Remote COGs: `http(s)://` URLs read by range requests, and `s3://bucket/key` objects on
//! S3-compatible storage, presigned with `object_store` from the usual environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL` for
//! MinIO/moto/…, `AWS_ALLOW_HTTP=true` for a plain-HTTP endpoint; without keys, anonymous
//! access to a public bucket) and then read by range
//! requests like any URL. Only the header, the IFDs and the tiles a window needs are fetched.

use super::GeoTiffSource;
use crate::error::{GeoError, Result};

/// Opens a remote COG by URI.
pub fn open_remote(uri: &str) -> Result<GeoTiffSource> {
    if let Some(rest) = uri.strip_prefix("s3://") {
        let url = presign_s3(uri, rest)?;
        GeoTiffSource::open_http(uri, &url)
    } else {
        GeoTiffSource::open_http(uri, uri)
    }
}

/// A presigned GET URL for `s3://bucket/key`, valid for a day.
fn presign_s3(uri: &str, bucket_and_key: &str) -> Result<String> {
    use object_store::signer::Signer;
    let (bucket, key) = bucket_and_key
        .split_once('/')
        .filter(|(b, k)| !b.is_empty() && !k.is_empty())
        .ok_or_else(|| GeoError::raster(uri, "expected s3://BUCKET/KEY"))?;
    // object_store reads AWS_ENDPOINT; the AWS CLI and SDKs use AWS_ENDPOINT_URL.
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .or_else(|_| std::env::var("AWS_ENDPOINT"))
        .ok();
    // Without keys, read a public bucket anonymously, rather than letting the credential
    // chain probe the cloud instance-metadata service.
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        let key: String = key
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                    (b as char).to_string()
                }
                other => format!("%{other:02X}"),
            })
            .collect();
        return Ok(match endpoint {
            Some(e) => format!("{}/{bucket}/{key}", e.trim_end_matches('/')),
            None => {
                let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
                format!("https://{bucket}.s3.{region}.amazonaws.com/{key}")
            }
        });
    }
    let mut builder = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
    if let Some(endpoint) = endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    let store = builder
        .build()
        .map_err(|e| GeoError::raster(uri, format!("S3 configuration: {e}")))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| GeoError::io(uri, e))?;
    let url = runtime
        .block_on(store.signed_url(
            http::Method::GET,
            &object_store::path::Path::from(key),
            std::time::Duration::from_secs(24 * 3600),
        ))
        .map_err(|e| GeoError::raster(uri, format!("cannot presign: {e}")))?;
    Ok(url.to_string())
}
