"""What a cell feeds the model: the verified corpora (WikiText-2, LongBench) and prompts of exactly the asked
token length."""
