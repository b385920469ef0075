DROP TABLE analyses;
DROP TABLE feedback;
DROP TABLE decisions;
DROP FUNCTION neurocds_refuse_change();
