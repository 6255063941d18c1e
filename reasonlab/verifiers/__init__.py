"""Learned and oracle verifiers: outcome / process reward models that score token paths
incrementally (their own KV cache, forked alongside the policy's), Monte-Carlo step labels
(Math-Shepherd) and the arith oracle step labels."""
