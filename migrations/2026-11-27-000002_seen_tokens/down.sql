DROP TABLE seen_tokens;
