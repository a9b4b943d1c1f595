//! Writes the sample City and ASN databases (see `qmeta_geo::testdb`) to a
//! directory, for trying the LB's geolocation fields by hand:
//!
//! ```text
//! cargo run -p qmeta-geo --example write_sample_dbs -- /tmp/geo
//! ```
#![forbid(unsafe_code)]

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    std::fs::create_dir_all(&dir)?;
    let files = [
        ("qmeta-sample-City.mmdb", qmeta_geo::testdb::sample_city_db()),
        ("qmeta-sample-ASN.mmdb", qmeta_geo::testdb::sample_asn_db()),
    ];
    for (name, bytes) in files {
        let path = dir.join(name);
        std::fs::write(&path, bytes)?;
        println!("{}", path.display());
    }
    Ok(())
}
