{
  "targets": [
    { "target_name": "vmdn_seek", "sources": ["native/seek.c"] }
  ]
}
