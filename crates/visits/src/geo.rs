//! Country from an IP address (BRW-1), from a MaxMind-format country
//! database (GeoLite2-Country or DB-IP's, path in the configuration). Without
//! one, callers fall back to the language's region and say so.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

/// A country database, or none.
#[derive(Clone, Default)]
pub struct Geo {
    reader: Option<Arc<maxminddb::Reader<Vec<u8>>>>,
}

impl std::fmt::Debug for Geo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Geo").field("configured", &self.reader.is_some()).finish()
    }
}

/// A database that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("geolocation database {path}: {message}")]
pub struct GeoError {
    pub path: String,
    pub message: String,
}

impl Geo {
    /// Opens the database at `path` (read into memory once), or no database.
    pub fn open(path: Option<&Path>) -> Result<Self, GeoError> {
        let Some(path) = path else { return Ok(Self::default()) };
        let reader = maxminddb::Reader::open_readfile(path)
            .map_err(|e| GeoError { path: path.display().to_string(), message: e.to_string() })?;
        Ok(Self { reader: Some(Arc::new(reader)) })
    }

    pub fn is_configured(&self) -> bool {
        self.reader.is_some()
    }

    /// The ISO country code of an address, when the database knows it.
    pub fn country(&self, ip: IpAddr) -> Option<String> {
        let reader = self.reader.as_ref()?;
        let found: Option<maxminddb::geoip2::Country> = reader.lookup(ip).ok().flatten();
        found.and_then(|c| c.country).and_then(|c| c.iso_code).map(str::to_string)
    }

    /// As [`Geo::country`], from an address as text.
    pub fn country_of(&self, ip: &str) -> Option<String> {
        ip.parse().ok().and_then(|ip| self.country(ip))
    }
}
