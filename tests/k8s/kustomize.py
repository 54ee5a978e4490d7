"""Render the k8s/ kustomizations: `kubectl kustomize` when installed, else a small renderer.

The fallback understands only what k8s/ uses: `resources` (files and directories), `patches`
with a `path` (strategic merge: maps merged, lists of named items merged by name, `$patch:
delete` on a whole object), `images` and `labels` without selectors. A test renders with both
when kubectl is present, so the fallback cannot drift from the real thing unnoticed.
"""

import copy
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2] / "k8s"
OVERLAYS = ["base", "overlays/demo", "overlays/production", "overlays/gvisor"]


def key(obj: dict) -> tuple:
    meta = obj.get("metadata", {})
    return (obj.get("kind"), meta.get("namespace"), meta.get("name"))


def kubectl_render(path: Path) -> list[dict]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def merge(base, patch):
    if isinstance(base, dict) and isinstance(patch, dict):
        result = dict(base)
        for k, v in patch.items():
            result[k] = merge(base[k], v) if k in base else copy.deepcopy(v)
        return result
    if isinstance(base, list) and isinstance(patch, list):
        if all(isinstance(i, dict) and "name" in i for i in base + patch):
            merged = [copy.deepcopy(i) for i in base]
            names = [i["name"] for i in merged]
            for item in patch:
                if item["name"] in names:
                    at = names.index(item["name"])
                    merged[at] = merge(merged[at], item)
                else:
                    merged.append(copy.deepcopy(item))
            return merged
        return copy.deepcopy(patch)
    return copy.deepcopy(patch)


def fallback_render(path: Path) -> list[dict]:
    kustomization = yaml.safe_load((path / "kustomization.yaml").read_text())
    objects: list[dict] = []
    for entry in kustomization.get("resources", []):
        target = (path / entry).resolve()
        if target.is_dir():
            objects += fallback_render(target)
        else:
            objects += [d for d in yaml.safe_load_all(target.read_text()) if d]
    for patch_entry in kustomization.get("patches", []):
        for patch in yaml.safe_load_all((path / patch_entry["path"]).read_text()):
            if not patch:
                continue
            at = [i for i, o in enumerate(objects) if key(o) == key(patch)]
            assert at, f"patch {patch_entry['path']} matches nothing: {key(patch)}"
            if patch.get("$patch") == "delete":
                del objects[at[0]]
            else:
                objects[at[0]] = merge(objects[at[0]], patch)
    for image in kustomization.get("images", []):
        for obj in objects:
            pod = obj.get("spec", {}).get("template", {}).get("spec", {})
            for c in pod.get("containers", []):
                if c["image"].split(":")[0] == image["name"]:
                    c["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    for label in kustomization.get("labels", []):
        for obj in objects:
            obj.setdefault("metadata", {}).setdefault("labels", {}).update(label["pairs"])
    return objects


def render(overlay: str) -> list[dict]:
    path = ROOT / overlay
    if shutil.which("kubectl"):
        return kubectl_render(path)
    return fallback_render(path)
