-- Sluice quickstart: the three auctions with the most bids in every 10-second window of a
-- Nexmark bid stream (10 M generated events, 100 000 events per second of event time),
-- printed as each window closes. Run with:
--   cargo run --release -p sluice-coordinator --bin sluice -- sql -f examples/quickstart.sql
-- Add `--parallelism 2` to run every operator on two slots.

CREATE TABLE bid (
    auction  BIGINT,
    bidder  BIGINT,
    price  BIGINT,
    channel  VARCHAR,
    url  VARCHAR,
    dateTime  TIMESTAMP(3),
    extra  VARCHAR,
    WATERMARK FOR dateTime AS dateTime - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark', 'table' = 'bid', 'events' = '10000000', 'rate' = '100000');

CREATE TABLE hot_auctions (
    window_start  TIMESTAMP(3),
    window_end  TIMESTAMP(3),
    auction  BIGINT,
    bids  BIGINT,
    top_price  BIGINT,
    rn  BIGINT
) WITH ('connector' = 'print');

INSERT INTO hot_auctions
SELECT window_start, window_end, auction, bids, top_price, rn
FROM (
    SELECT *, ROW_NUMBER() OVER (
        PARTITION BY window_start, window_end ORDER BY bids DESC, auction) AS rn
    FROM (
        SELECT window_start, window_end, auction, COUNT(*) AS bids, MAX(price) AS top_price
        FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
        GROUP BY window_start, window_end, auction
    )
)
WHERE rn <= 3;
