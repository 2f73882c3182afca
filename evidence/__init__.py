"""Evidence of incidents: clips remuxed from encoded packets, annotated snapshots, manifests, retention.

- :mod:`evidence.ring` keeps each camera's recent *encoded* packets (no decoding) and cuts clip jobs;
- :mod:`evidence.clip` remuxes a job into a browser-playable MP4 on a worker thread that never blocks;
- :mod:`evidence.snapshot` draws the zone, boxes, labels, camera and time on the frame the rule fired on;
- :mod:`evidence.manifest` records what the evidence is and what produced it (hashes, model, rule, config);
- :mod:`evidence.store` is the only place files are read from, with paths checked to stay inside it;
- :mod:`evidence.retention` deletes by age and total size, never the evidence of an open ticket;
- :mod:`evidence.recorder` ties them together for one incident.
"""
