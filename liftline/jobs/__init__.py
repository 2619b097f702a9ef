"""Background jobs on the same cluster: quorum queues, retries, dead letters, results.

Import what you need from the submodules: ``liftline.jobs.client`` (JobClient,
JobHandle), ``liftline.jobs.spec`` (JobContext), ``liftline.jobs.hooks``
(JobHook), ``liftline.jobs.runner``. The runner's decisions are in
``liftline.jobs.outcomes`` (pure) and carried out by ``liftline.jobs.outcome_io``.
"""
