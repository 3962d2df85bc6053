#!/usr/bin/env python3
"""Checks evaluate's GeoJSON (geojson/*.geojson in an output folder) the way QuPath and RFC 7946
read it: a FeatureCollection of Features, Polygon or MultiPolygon geometries with closed rings of at
least 4 positions, outer rings counter-clockwise and holes clockwise, every geometry valid for
shapely (GEOS: no self-intersection, holes inside their shell), `objectType: detection`, a
classification with a name and an RGB colour, and each nucleus' polygon area equal to its
`AreaShape_Area` measurement (pixel edges: exactly). Also checks labels/*.png|tif, when present,
against the same measurements. Prints one JSON line of counts; exit 1 on any problem.

    pip install shapely numpy pillow
    cellops evaluate --images DATA --params P --model nuclei --labels --geojson --output OUT
    python3 bench/geojson_check.py OUT
"""
import json
import sys
from pathlib import Path

from shapely.geometry import shape
from shapely.validation import explain_validity


def ring_ok(ring, outer):
    from shapely.geometry import LinearRing

    if len(ring) < 4 or ring[0] != ring[-1]:
        return "a ring is not closed or has fewer than 4 positions"
    if LinearRing(ring).is_ccw != outer:
        return "an outer ring is not counter-clockwise" if outer else "a hole is not clockwise"
    return None


def check_feature(f):
    if f.get("type") != "Feature":
        return "not a Feature"
    props = f.get("properties", {})
    if props.get("objectType") != "detection":
        return "objectType is not detection"
    cls = props.get("classification")
    if cls is not None and (not isinstance(cls.get("name"), str) or len(cls.get("color", [])) != 3):
        return "classification without a name and an RGB colour"
    geom = f.get("geometry", {})
    polygons = {"Polygon": [geom.get("coordinates")], "MultiPolygon": geom.get("coordinates")}.get(geom.get("type"))
    if polygons is None:
        return f"geometry {geom.get('type')}"
    for rings in polygons:
        for i, ring in enumerate(rings):
            problem = ring_ok(ring, i == 0)
            if problem:
                return problem
    g = shape(geom)
    if not g.is_valid:
        return "invalid: " + explain_validity(g)
    area = props.get("measurements", {}).get("AreaShape_Area")
    if area is None or abs(g.area - area) > 1e-9:
        return f"area {g.area} but AreaShape_Area {area}"
    return None


def check_labels(out, image, features):
    for ext in ("png", "tif"):
        path = out / "labels" / f"{image}.{ext}"
        if path.exists():
            import numpy as np
            from PIL import Image

            labels = np.asarray(Image.open(path))
            counts = dict(zip(*np.unique(labels, return_counts=True)))
            for f in features:
                m = f["properties"]["measurements"]
                if counts.get(m["ObjectNumber"], 0) != m["AreaShape_Area"]:
                    return f"label {m['ObjectNumber']} has {counts.get(m['ObjectNumber'], 0)} pixels"
            return None
    return None


def main():
    out = Path(sys.argv[1])
    files = sorted((out / "geojson").glob("*.geojson"))
    problems, features, multi, holes = [], 0, 0, 0
    for path in files:
        fc = json.loads(path.read_text())
        if fc.get("type") != "FeatureCollection":
            problems.append(f"{path}: not a FeatureCollection")
            continue
        for f in fc["features"]:
            features += 1
            multi += f["geometry"]["type"] == "MultiPolygon"
            polys = f["geometry"]["coordinates"] if f["geometry"]["type"] == "MultiPolygon" else [f["geometry"]["coordinates"]]
            holes += sum(len(p) - 1 for p in polys)
            problem = check_feature(f)
            if problem:
                problems.append(f"{path}: {problem}")
        problem = check_labels(out, path.stem, fc["features"])
        if problem:
            problems.append(f"{path.stem} labels: {problem}")
    print(json.dumps({"files": len(files), "features": features, "multipolygons": multi, "holes": holes, "problems": len(problems)}))
    for p in problems[:20]:
        print(p, file=sys.stderr)
    sys.exit(1 if problems or not files else 0)


if __name__ == "__main__":
    main()
