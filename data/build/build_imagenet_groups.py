"""Build ``imagenet_class_groups.json``: the class groups behind the ``imagenet-heads`` model.

Run deliberately (``python data/build/build_imagenet_groups.py``); the output is committed.

How the groups were built
-------------------------
ImageNet-1k's class indices follow the WordNet hierarchy in contiguous blocks:

* 0-397     animals (fish, birds, amphibians, reptiles, invertebrates, mammals)
* 398-923   artefacts (objects, vehicles, buildings, clothing, ...)
* 924-969   food (dishes 924-935 and 959-969; vegetables 936-947; fruits 948-957; hay 958)
* 970-980   geological formations (alp, cliff, coral reef, lakeside, seashore, valley, ...)
* 981-983   people (ballplayer, groom, scuba diver)
* 984-998   plants and fungi (rapeseed, daisy, corn, acorn, mushrooms, ear)
* 999       toilet tissue (an artefact)

Every head is a *partition* of the 1000 classes, so that the softmax of the group logits
(logsumexp of the member logits) equals the summed ImageNet probability of each group.

``material`` (material vs immaterial, the study's third task): *immaterial* are the classes whose
pictures are mostly a depiction, a screen or text rather than a tangible thing: screens (television,
monitor, screen, home theater, scoreboard, desktop computer, laptop, notebook, hand-held computer),
text (web site, crossword puzzle, menu, street sign) and printed depictions (comic book, book jacket,
jigsaw puzzle); everything else is *material*. Limits: ImageNet has no class for a meme, a drawing, a
painting or a screenshot of a nature photograph; those are classified by what they show (a drawn fox
scores as a fox, so as material), and the screen classes also hold the device itself.

``wetlands`` (in ``landscape``): ImageNet has no wetland *scene* class (no marsh, swamp, bog, fen or
reed bed; ``lakeside`` is open water and stays in ``water_bodies``). Wetlands are therefore inferred
from wetland fauna only: wading birds (storks, spoonbill, flamingo, herons and egrets, bittern,
crane, limpkin, gallinule, coot), crocodile and alligator, bullfrog, dragonfly and damselfly,
beaver and hippopotamus. A wetland photograph without one of these animals scores as
``forests_semi_natural`` or ``water_bodies``.
"""

from __future__ import annotations

import json
from pathlib import Path

from torchvision.models import ResNet18_Weights

CATEGORIES: list[str] = list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])

ANIMALS = set(range(0, 398))
ARTEFACTS = set(range(398, 924)) | {999}
DISHES = set(range(924, 936)) | set(range(959, 970))
VEGETABLES = set(range(936, 948))
FRUITS = set(range(948, 958))
HAY = {958}
GEOLOGY = set(range(970, 981))
PEOPLE = set(range(981, 984))
PLANTS_FUNGI = set(range(984, 999))

# Artefacts that define a landscape rather than an indoor scene.
BOATS = {403, 472, 484, 510, 554, 576, 625, 628, 694, 724, 780, 814, 833, 871, 913, 914}
WATERSIDE = {449, 460, 525, 536, 718}  # boathouse, breakwater, dam, dock, pier
AGRICULTURE = {425, 595, 730, 856, 866, 690, 580, 410, 912}  # barn, harvester, plow, thresher, tractor, ...
FARM_ANIMALS = {345, 346, 347, 348, 349}  # ox, water buffalo, bison, ram, bighorn

WATER_ANIMALS = set(range(0, 7)) | set(range(107, 126)) | {147, 148, 149, 150} | set(range(389, 398))
# Wading birds 127-137, crocodile and alligator, bullfrog, dragonfly, damselfly, beaver, hippopotamus.
WETLAND_ANIMALS = set(range(127, 138)) | {49, 50, 30, 319, 320, 337, 344}

# Pictures that are mostly a screen, text or a printed depiction (see the module docs).
SCREENS = {851, 664, 782, 598, 781, 527, 620, 681, 590}  # television, monitor, screen, home theater, ...
TEXT = {916, 918, 922, 919}  # web site, crossword puzzle, menu, street sign
DEPICTIONS = {917, 921, 611}  # comic book, book jacket, jigsaw puzzle


def build() -> dict:
    n = len(CATEGORIES)
    assert n == 1000
    all_idx = set(range(n))

    nature = sorted(ANIMALS | GEOLOGY | PLANTS_FUNGI | VEGETABLES | FRUITS | HAY)
    groups_nature = {"nature": nature, "non_nature": sorted(all_idx - set(nature))}

    biotic = sorted(ANIMALS | PLANTS_FUNGI | VEGETABLES | FRUITS | HAY | PEOPLE)
    groups_biotic = {"biotic": biotic, "abiotic": sorted(all_idx - set(biotic))}

    immaterial = SCREENS | TEXT | DEPICTIONS
    assert immaterial <= ARTEFACTS
    groups_material = {"material": sorted(all_idx - immaterial), "immaterial": sorted(immaterial)}

    water = WATER_ANIMALS | BOATS | WATERSIDE | {973, 975, 977, 978}
    agricultural = AGRICULTURE | FARM_ANIMALS | HAY | {984, 987, 998}
    wetlands = WETLAND_ANIMALS - water - agricultural
    assert wetlands == WETLAND_ANIMALS
    semi_natural = (ANIMALS - water - agricultural - wetlands) | (GEOLOGY - water) | (PLANTS_FUNGI - agricultural)
    artificial = ARTEFACTS - water - agricultural
    other = all_idx - water - agricultural - semi_natural - artificial - wetlands
    groups_landscape = {
        "artificial_surfaces": sorted(artificial),
        "agricultural_areas": sorted(agricultural),
        "forests_semi_natural": sorted(semi_natural),
        "wetlands": sorted(wetlands),
        "water_bodies": sorted(water),
        "other_none": sorted(other),
    }
    for name, groups in (("nature", groups_nature), ("biotic", groups_biotic), ("material", groups_material),
                         ("landscape", groups_landscape)):
        members = [i for g in groups.values() for i in g]
        assert sorted(members) == list(range(n)), f"{name} is not a partition"

    return {
        "description": __doc__.strip(),
        "imagenet_classes": CATEGORIES,
        "heads": {
            "nature": groups_nature,
            "biotic": groups_biotic,
            "material": groups_material,
            "landscape": groups_landscape,
        },
        # Coarse groups used by region labellers (segmentation/) for class evidence.
        "evidence_groups": {
            "animal": sorted(ANIMALS),
            "person": sorted(PEOPLE),
            "built": sorted(ARTEFACTS),
            "vegetation": sorted(PLANTS_FUNGI | VEGETABLES | FRUITS | HAY),
            "water": sorted({973, 975, 977, 978} | BOATS),
        },
    }


if __name__ == "__main__":
    out = Path(__file__).resolve().parent.parent / "imagenet_class_groups.json"
    out.write_text(json.dumps(build(), indent=1) + "\n")
    print(f"wrote {out}")
