# py: a 2M-entry dict of strings (run with PYTHONMALLOC=malloc: ~28M malloc-family calls).
d = {str(i): str(i) * 2 for i in range(2_000_000)}
print(len(d))
