"""harp on a Ray cluster: Ray Jobs, the token, shared storage and what a trial may ask for.

- ``job_spec``: the files in ``jobs/`` (a sweep as a Ray Job: entrypoint, runtime env, resources)
- ``jobs``: Ray's ``JobSubmissionClient`` with one-line errors (``harp submit``, ``harp jobs``)
- ``auth``: where Ray's token comes from, and a warning when its file is readable by others
- ``job_env``: inside a job, paths the sweep writes must not land in Ray's package cache
- ``storage``: ``sweep.output_dir`` (a path or a URI) -> a pyarrow filesystem and a path
- ``resources``: a trial's resource demand against the cluster's nodes, checked before Tune runs

Layer: between ``harp.tune`` and ``harp.evaluate`` (it reads ``harp.config`` only), so the commands
and the tuner may both use it.
"""
