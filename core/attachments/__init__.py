"""Attachments: from the bytes a person sent to what a model can take (issue 17).

Pure functions, no Redis and no network; the fronts and the turn wire them.

- `media`: the media type sniffed from the first bytes (never from a name or a claimed type)
  and its kind: image, document or audio.
- `images`: an image decoded and re-encoded with Pillow, small enough for a model, without
  metadata; decompression bombs refused.
- `documents`: a PDF's text (pypdf) or a UTF-8 text file, as a fenced block that names the file.

Decoding is CPU work: from the event loop, call the `*_in_thread` wrappers.
"""
