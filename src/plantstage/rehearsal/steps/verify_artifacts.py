from __future__ import annotations

from plantstage import artifacts
from plantstage.rehearsal.steps import Step


class VerifyArtifacts(Step):
    """Refuse to run unless both artifacts are exactly the ones the spec approved."""

    name = "verify-artifacts"
    title = "Verify release artifacts"
    setup = True

    def run(self, ctx):
        out = {}
        for rel in (ctx.current, ctx.release):
            idx = ctx.spec.releases.index(rel)
            d = artifacts.verify(ctx.artifact_dir(rel), rel.artifact.sha256,
                                 where=f"{ctx.loaded.path}: releases[{idx}].artifact.sha256")
            ctx.digests[rel.name] = d
            out[rel.name] = {"path": rel.artifact.path, "sha256": d}
        return out
