-- The seed's twelve sample queries over pricing_intelligence_{stage}.sales_history, in plain
-- standard SQL. The same text runs on this crate's engine (`SalesHistory::sql`, DataFusion,
-- examples/run_queries.rs), on DuckDB (python/duckdb_queries.py) and on Athena (replace
-- `sales_history` with `pricing_intelligence_{stage}.sales_history`).
--
-- Format: each query starts with a line `-- Query N: Name` and ends with `;`. Every query
-- orders its result completely, so two engines can be compared row by row.

-- Query 1: Sales Volume by Category and Month
SELECT category,
       EXTRACT(YEAR FROM sold_date) AS sale_year,
       EXTRACT(MONTH FROM sold_date) AS sale_month,
       COUNT(*) AS sales_count,
       SUM(sold_price) AS total_revenue,
       AVG(sold_price) AS avg_price
FROM sales_history
WHERE category IS NOT NULL
GROUP BY category, EXTRACT(YEAR FROM sold_date), EXTRACT(MONTH FROM sold_date)
ORDER BY category, sale_year, sale_month;

-- Query 2: Brand Performance Analysis
SELECT brand,
       COUNT(*) AS sales_count,
       SUM(sold_price) AS total_revenue,
       AVG(sold_price) AS avg_price,
       MIN(sold_price) AS min_price,
       MAX(sold_price) AS max_price,
       COUNT(DISTINCT tenant_id) AS tenants
FROM sales_history
WHERE brand IS NOT NULL
GROUP BY brand
HAVING COUNT(*) >= 5
ORDER BY total_revenue DESC, brand
LIMIT 20;

-- Query 3: Product Condition Impact
SELECT condition,
       COUNT(*) AS sales_count,
       AVG(sold_price) AS avg_price,
       MIN(sold_price) AS min_price,
       MAX(sold_price) AS max_price
FROM sales_history
WHERE condition IS NOT NULL
GROUP BY condition
ORDER BY condition;

-- Query 4: Category-Brand Cross-Tab
SELECT category,
       brand,
       COUNT(*) AS sales_count,
       SUM(sold_price) AS total_revenue,
       AVG(sold_price) AS avg_price
FROM sales_history
WHERE category IS NOT NULL AND brand IS NOT NULL
GROUP BY category, brand
ORDER BY category, sales_count DESC, brand;

-- Query 5: Data Source Comparison
SELECT source,
       COUNT(*) AS sales_count,
       COUNT(DISTINCT tenant_id) AS tenants,
       COUNT(DISTINCT product_id) AS products,
       SUM(sold_price) AS total_revenue,
       AVG(sold_price) AS avg_price
FROM sales_history
WHERE source IS NOT NULL
GROUP BY source
ORDER BY sales_count DESC, source;

-- Query 6: Monthly Sales Trend
SELECT DATE_TRUNC('month', sold_date) AS sale_month,
       COUNT(*) AS sales_count,
       SUM(sold_price) AS total_revenue,
       AVG(sold_price) AS avg_price
FROM sales_history
GROUP BY DATE_TRUNC('month', sold_date)
ORDER BY sale_month;

-- Query 7: High-Value Products
SELECT product_id,
       tenant_id,
       category,
       brand,
       condition,
       sold_price,
       sold_date
FROM sales_history
WHERE sold_price >= 1000
ORDER BY sold_price DESC, product_id, tenant_id, sold_date
LIMIT 50;

-- Query 8: Embedding Similarity Candidates
-- Recent handbag sales in a price band that carry an embedding: the candidate set a
-- similarity search ranks (first vector component shown as a spot check). "Has an embedding"
-- is written `embedding[1] IS NOT NULL`: iceberg-datafusion 0.10.1 pushes a plain
-- `embedding IS NOT NULL` into iceberg's row filter, which has no accessor for list columns.
SELECT product_id,
       tenant_id,
       brand,
       sold_price,
       sold_date,
       embedding[1] AS embedding_first
FROM sales_history
WHERE embedding[1] IS NOT NULL
  AND category = 'handbags'
  AND sold_price BETWEEN 500 AND 5000
  AND sold_date >= TIMESTAMP '2025-07-01 00:00:00'
ORDER BY sold_date DESC, product_id, tenant_id
LIMIT 25;

-- Query 9: Partition Pruning Example
-- A one-month range on sold_date: only that month's files are planned and read.
SELECT tenant_id,
       COUNT(*) AS sales_count,
       SUM(sold_price) AS total_revenue
FROM sales_history
WHERE sold_date >= TIMESTAMP '2025-03-01 00:00:00'
  AND sold_date < TIMESTAMP '2025-04-01 00:00:00'
GROUP BY tenant_id
ORDER BY tenant_id;

-- Query 10: Data Quality Check
SELECT COUNT(*) AS total_rows,
       COUNT(DISTINCT product_id) AS distinct_products,
       COUNT(*) - COUNT(category) AS missing_category,
       COUNT(*) - COUNT(brand) AS missing_brand,
       COUNT(*) - COUNT(condition) AS missing_condition,
       COUNT(*) - COUNT(season) AS missing_season,
       COUNT(*) - COUNT(image_s3_key) AS missing_image,
       COUNT(*) - COUNT(embedding) AS missing_embedding,
       COUNT(*) - COUNT(description) AS missing_description,
       COUNT(*) - COUNT(source) AS missing_source,
       SUM(CASE WHEN sold_price <= 0 THEN 1 ELSE 0 END) AS non_positive_prices,
       SUM(CASE
               WHEN season IS NULL THEN 0
               WHEN season = CASE
                                 WHEN EXTRACT(MONTH FROM sold_date) <= 3 THEN 'Q1'
                                 WHEN EXTRACT(MONTH FROM sold_date) <= 6 THEN 'Q2'
                                 WHEN EXTRACT(MONTH FROM sold_date) <= 9 THEN 'Q3'
                                 ELSE 'Q4'
                             END THEN 0
               ELSE 1
           END) AS season_mismatches,
       MIN(sold_date) AS first_sale,
       MAX(sold_date) AS last_sale
FROM sales_history;

-- Query 11: Price Distribution Analysis
SELECT price_band,
       COUNT(*) AS sales_count,
       MIN(sold_price) AS band_min,
       MAX(sold_price) AS band_max,
       AVG(sold_price) AS avg_price
FROM (
    SELECT CASE
               WHEN sold_price < 100 THEN '0-100'
               WHEN sold_price < 500 THEN '100-500'
               WHEN sold_price < 1000 THEN '500-1000'
               WHEN sold_price < 5000 THEN '1000-5000'
               ELSE '5000+'
           END AS price_band,
           sold_price
    FROM sales_history
) AS banded
GROUP BY price_band
ORDER BY band_min;

-- Query 12: Season Performance Comparison
SELECT season,
       EXTRACT(YEAR FROM sold_date) AS sale_year,
       COUNT(*) AS sales_count,
       SUM(sold_price) AS total_revenue,
       AVG(sold_price) AS avg_price
FROM sales_history
WHERE season IS NOT NULL
GROUP BY season, EXTRACT(YEAR FROM sold_date)
ORDER BY season, sale_year;
