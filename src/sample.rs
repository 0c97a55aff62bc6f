//! Deterministic, realistic sample sales (what the seed's `load-sample-sales-data.py` made).
//!
//! The same [`SampleConfig`] (seed included) gives the same rows on any machine: the
//! generator uses its own SplitMix64 stream, not a platform RNG. Embeddings are unit vectors
//! clustered by category and brand, with values rounded through `f32` (what an embedding
//! model emits, stored as DOUBLE).

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};

use crate::month::Month;
use crate::record::{Price, SaleRecord, Season};

/// Categories with the brands that belong to them and a typical price range in cents.
const CATALOG: &[(&str, &[&str], (i64, i64))] = &[
    (
        "handbags",
        &["Hermès", "Chanel", "Louis Vuitton", "Gucci", "Prada"],
        (15_000, 1_200_000),
    ),
    (
        "watches",
        &["Rolex", "Omega", "Cartier", "Tag Heuer"],
        (50_000, 2_500_000),
    ),
    (
        "sneakers",
        &["Nike", "Adidas", "New Balance", "Asics"],
        (4_000, 60_000),
    ),
    (
        "jackets",
        &["Moncler", "Canada Goose", "Patagonia", "Barbour"],
        (8_000, 250_000),
    ),
    (
        "jewelry",
        &["Tiffany", "Bulgari", "Van Cleef", "Pandora"],
        (5_000, 900_000),
    ),
    (
        "sunglasses",
        &["Ray-Ban", "Oakley", "Persol"],
        (3_000, 45_000),
    ),
];
const CONDITIONS: &[(&str, i64)] = &[("new", 100), ("like_new", 85), ("good", 70), ("fair", 50)];
const SOURCES: &[&str] = &["marketplace", "auction", "retail", "consignment"];

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SampleConfig {
    /// Seed of the random stream.
    pub seed: u64,
    /// Number of tenants (`tenant-001`, …).
    pub tenants: usize,
    /// Number of months covered, ending with `end_month` (inclusive).
    pub months: u32,
    /// First day of the last month covered.
    pub end_month: NaiveDate,
    /// Embedding length (0 for no embeddings).
    pub embedding_dimension: usize,
}

impl Default for SampleConfig {
    fn default() -> Self {
        SampleConfig {
            seed: 42,
            tenants: 5,
            months: 24,
            end_month: NaiveDate::from_ymd_opt(2025, 12, 1).unwrap_or_default(),
            embedding_dimension: crate::schema::DEFAULT_EMBEDDING_DIMENSION,
        }
    }
}

impl SampleConfig {
    /// Sets the seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Sets the number of tenants (at least 1).
    pub fn tenants(mut self, tenants: usize) -> Self {
        self.tenants = tenants.max(1);
        self
    }
    /// Sets the number of months (at least 1).
    pub fn months(mut self, months: u32) -> Self {
        self.months = months.max(1);
        self
    }
    /// Sets the last month covered (any day of it).
    pub fn end_month(mut self, month: NaiveDate) -> Self {
        self.end_month = month.with_day(1).unwrap_or(month);
        self
    }
    /// Sets the embedding length (0: rows carry no embedding).
    pub fn embedding_dimension(mut self, dimension: usize) -> Self {
        self.embedding_dimension = dimension;
        self
    }
}

/// An endless, deterministic stream of sample rows; take as many as needed.
#[derive(Debug, Clone)]
pub struct SampleGenerator {
    config: SampleConfig,
    state: u64,
    index: u64,
    /// The first month covered.
    start: Month,
}

impl SampleGenerator {
    /// A generator for `config`.
    pub fn new(config: SampleConfig) -> Self {
        let end = Month::from_year_month(config.end_month.year(), config.end_month.month())
            .unwrap_or(Month::from_ordinal(0));
        let back = i32::try_from(config.months.saturating_sub(1)).unwrap_or(i32::MAX);
        let start = Month::from_ordinal(end.ordinal().saturating_sub(back));
        SampleGenerator {
            state: config.seed ^ 0x9E37_79B9_7F4A_7C15,
            config,
            index: 0,
            start,
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The next `n` rows.
    pub fn take_records(&mut self, n: usize) -> Vec<SaleRecord> {
        (0..n).map(|_| self.next_record()).collect()
    }

    /// The next row.
    pub fn next_record(&mut self) -> SaleRecord {
        let i = self.index;
        self.index += 1;
        let (category, brands, (lo, hi)) = CATALOG[self.below(CATALOG.len() as u64) as usize];
        let brand_idx = self.below(brands.len() as u64) as usize;
        let brand = brands[brand_idx];
        let (condition, pct) = CONDITIONS[self.below(CONDITIONS.len() as u64) as usize];
        let source = SOURCES[self.below(SOURCES.len() as u64) as usize];
        let tenant = format!("tenant-{:03}", 1 + self.below(self.config.tenants as u64));
        let offset = self.below(self.config.months as u64) as i32;
        let month = Month::from_ordinal(self.start.ordinal().saturating_add(offset));
        let first = month.start_micros().unwrap_or_default();
        let span = (month.end_micros().unwrap_or(first) - first).max(1_000_000) as u64;
        let micros = first + self.below(span / 1_000_000) as i64 * 1_000_000;
        let sold_date: DateTime<Utc> = DateTime::from_timestamp_micros(micros).unwrap_or_default()
            + Duration::microseconds(self.below(1_000_000) as i64);
        // Log-uniform within the category's range, scaled by condition.
        let (lf, hf) = ((lo as f64).ln(), (hi as f64).ln());
        let cents = ((lf + self.unit() * (hf - lf)).exp() * pct as f64 / 100.0).round() as i64;
        let price = Price::from_cents(cents.clamp(100, Price::MAX_CENTS)).unwrap_or(Price::ZERO);
        let product_id = format!("{}-{:08x}-{i}", &category[..3], self.next_u64() as u32);
        let embedding =
            (self.config.embedding_dimension > 0).then(|| self.embedding(category, brand_idx));
        SaleRecord {
            image_s3_key: Some(format!("images/{tenant}/{product_id}.jpg")),
            description: Some(format!("{condition} {brand} {category} ({source})")),
            product_id,
            tenant_id: tenant,
            category: Some(category.to_string()),
            brand: Some(brand.to_string()),
            condition: Some(condition.to_string()),
            sold_price: price,
            season: Some(Season::of(sold_date)),
            sold_date,
            embedding,
            source: Some(source.to_string()),
        }
    }

    /// A unit vector near a centre shared by the category and, closer, by the brand.
    fn embedding(&mut self, category: &str, brand_idx: usize) -> Vec<f64> {
        let dim = self.config.embedding_dimension;
        let cat_seed = category.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x1000_0000_01b3)
        });
        let centre = |seed: u64, j: usize| {
            let x = (seed ^ (j as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
                .wrapping_mul(0xBF58_476D_1CE4_E5B9);
            ((x >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        };
        let mut v: Vec<f64> = (0..dim)
            .map(|j| {
                centre(cat_seed, j)
                    + 0.6 * centre(cat_seed.wrapping_add(brand_idx as u64 + 1), j)
                    + 0.35 * (self.unit() * 2.0 - 1.0)
            })
            .collect();
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm > 0.0 {
            // Rounded through f32, as a model's float32 output stored as DOUBLE is: the low 29
            // mantissa bits are zero (which BYTE_STREAM_SPLIT + Snappy turns into fewer bytes).
            v.iter_mut()
                .for_each(|x| *x = f64::from((*x / norm) as f32));
        }
        v
    }
}

impl Iterator for SampleGenerator {
    type Item = SaleRecord;

    fn next(&mut self) -> Option<SaleRecord> {
        Some(self.next_record())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_valid() {
        let cfg = SampleConfig::default().embedding_dimension(8);
        let a = SampleGenerator::new(cfg.clone()).take_records(200);
        let b = SampleGenerator::new(cfg.clone()).take_records(200);
        let c = SampleGenerator::new(cfg.seed(7)).take_records(200);
        assert_eq!(a, b);
        assert_ne!(a, c);
        for (i, r) in a.iter().enumerate() {
            r.check(Some(i)).unwrap();
            assert!(r.sold_date.year() >= 2024 && r.sold_date.year() <= 2025);
        }
    }
}
