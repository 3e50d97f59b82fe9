"""The response plan's vocabulary and the pure logic over it: parties and codes, who may see
and do what, the directory, reports and their facts, the lifecycle, who owns an action, how
reports correlate, how personal data is masked. No I/O; every service reads it."""
