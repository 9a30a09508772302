"""Generate RecScope's synthetic demo dataset: a fictional book catalogue and its readers.

Run ``python data/generate_demo.py`` to rewrite ``interactions.csv``, ``items.csv`` and
``user_edges.csv`` next to this script (``--out DIR`` writes elsewhere). The seed is fixed, so
the output is identical byte for byte on every run; ``tests/test_demo_data.py`` checks that.

Generative story (see ``data/README.md``):

1. Twelve latent *topics* (space, magic, crime, ...) and two *style* axes (tone: dark to light,
   pace: slow to fast).
2. Each book gets a sparse topic mixture, a style point, a quality and a power-law popularity.
   Its category, tags, title and 2-4 sentence description are drawn from vocabularies tied to
   those latent values, so the metadata and the text carry real signal about who reads it.
   About 5% of books are never read (cold items).
3. Each reader gets a topic mixture (a quarter of them close to a single topic), style
   preferences, an activity level and an active period within the two years covered.
4. Readers pick books with probability proportional to popularity times taste affinity
   (sampling without replacement); ratings 1-5 rise with affinity and book quality.
5. Friendships link readers with similar topic mixtures more often than chance.

Only numpy (random numbers) and pandas (CSV writing) are used. Every value written is an integer
or a string, so no float formatting can vary between platforms.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

SEED = 20240617
NUM_USERS = 1000
NUM_ITEMS = 1500
COLD_FRACTION = 0.05
TARGET_INTERACTIONS = 70_000
START_TIME = 1_672_531_200  # 2023-01-01T00:00:00Z
SPAN_SECONDS = 730 * 86_400  # two years
DAY = 86_400

# ---------------------------------------------------------------------------------- vocabulary
CATEGORIES = [
    "Science Fiction", "Fantasy", "Mystery", "Thriller", "Romance", "Historical Fiction",
    "Horror", "Literary Fiction", "Young Adult", "Adventure", "Comedy", "Dystopian",
]


@dataclass(frozen=True)
class Topic:
    """Vocabulary of one latent topic; every phrase is singular third person.

    ``style`` is the topic's typical (tone, pace): horror leans dark, spy novels lean fast.
    """

    name: str
    style: tuple[float, float]
    categories: dict[str, float]
    tags: tuple[str, ...]
    title_adjectives: tuple[str, ...]
    title_nouns: tuple[str, ...]
    title_objects: tuple[str, ...]
    protagonists: tuple[str, ...]
    settings: tuple[str, ...]
    conflicts: tuple[str, ...]
    hooks: tuple[str, ...]
    themes: tuple[str, ...]


TOPICS: tuple[Topic, ...] = (
    Topic(
        name="space",
        style=(0.0, 0.4),
        categories={"Science Fiction": 0.7, "Dystopian": 0.1, "Adventure": 0.1, "Young Adult": 0.1},
        tags=("space-opera", "artificial-intelligence", "first-contact"),
        title_adjectives=("Silent", "Distant", "Hollow", "Burning", "Quantum", "Cold", "Final",
                          "Drifting", "Iron", "Radiant"),
        title_nouns=("Orbit", "Signal", "Horizon", "Station", "Protocol", "Star", "Frontier",
                     "Vessel", "Eclipse", "Relay"),
        title_objects=("the Void", "Saturn", "the Outer Belt", "Glass Suns", "the Long Dark",
                       "Titan", "Distant Worlds", "the Last Colony"),
        protagonists=("a disgraced starship navigator", "an exhausted orbital engineer",
                      "a rogue android", "the youngest officer on a mining freighter",
                      "a xenolinguist with a secret", "a salvage pilot deep in debt",
                      "a colony doctor", "a ship intelligence that has just woken up"),
        settings=("On a generation ship drifting between stars",
                  "Aboard a failing station above Jupiter",
                  "On a frozen moon at the edge of charted space",
                  "Across a galaxy held together by fragile hyperlanes",
                  "In a terraformed colony on Mars",
                  "Inside a derelict alien megastructure",
                  "On a research outpost orbiting a dying sun",
                  "Among the asteroid miners of the outer belt"),
        conflicts=("must decide who to trust when the onboard intelligence begins to lie",
                   "races to decode a signal that should not exist",
                   "uncovers a conspiracy that reaches back to Earth",
                   "has to negotiate first contact with a species that thinks in mathematics",
                   "fights to keep the air recyclers running as the crew turns on itself",
                   "discovers that the mission records have been rewritten",
                   "attempts a desperate jump across uncharted space",
                   "learns that the colony was never meant to survive"),
        hooks=("a routine salvage job", "a distress call from a silent ship",
               "a mutiny in deep space", "a first-contact mission",
               "a quarantine aboard a crippled station", "a race to terraform a hostile world",
               "an experiment with faster-than-light travel", "a machine uprising"),
        themes=("artificial minds", "isolation", "the cost of progress",
                "humanity among the stars", "memory and identity", "exploration"),
    ),
    Topic(
        name="magic",
        style=(0.2, 0.4),
        categories={"Fantasy": 0.8, "Young Adult": 0.15, "Adventure": 0.05},
        tags=("dragons", "quest", "mythology"),
        title_adjectives=("Ember", "Shattered", "Hidden", "Crimson", "Thorned", "Forgotten",
                          "Gilded", "Wild", "Raven", "Moonlit"),
        title_nouns=("Crown", "Throne", "Sword", "Oath", "Witch", "Kingdom", "Spell", "Dragon",
                     "Grimoire", "Tower"),
        title_objects=("Ash", "the Seventh Kingdom", "Thorns", "Storms", "the Old Gods",
                       "Silver", "the Fallen", "Embers"),
        protagonists=("an apprentice mage with forbidden talents", "an exiled princess",
                      "a blacksmith who hears the voices of swords", "a reluctant dragon rider",
                      "an aging wizard", "a thief bound by an ancient oath", "a hedge witch",
                      "the last knight of a fallen order"),
        settings=("In a kingdom where magic is rationed by the crown",
                  "Beyond the Ashen Mountains",
                  "In a city built on the bones of a dragon",
                  "Across the seven realms of a fractured empire",
                  "In an enchanted forest that rearranges itself at night",
                  "At an academy for sorcerers",
                  "In a land ruled by immortal queens",
                  "On the borderlands between the mortal and fae worlds"),
        conflicts=("must recover a stolen relic before the eclipse",
                   "sets out to break a curse laid on the royal bloodline",
                   "is drawn into a war between rival covens",
                   "has to tame a dragon that no one else can approach",
                   "discovers a prophecy that names the wrong hero",
                   "joins a fellowship sworn to destroy an ancient tome",
                   "bargains with a trickster god",
                   "fights to reclaim a throne taken by usurpers"),
        hooks=("a quest for a lost crown", "a duel between sorcerers", "a broken prophecy",
               "a pact with the fae", "a siege of a magical city", "a hunt for the last dragon",
               "a curse that spreads through dreams", "a tournament of spellcasters"),
        themes=("power and its price", "destiny", "loyalty", "ancient myths", "courage",
                "the burden of magic"),
    ),
    Topic(
        name="crime",
        style=(-0.5, 0.5),
        categories={"Mystery": 0.7, "Thriller": 0.25, "Literary Fiction": 0.05},
        tags=("detective", "heist", "courtroom"),
        title_adjectives=("Cold", "Quiet", "Bloody", "Silent", "Broken", "Missing", "Final",
                          "Crooked", "Guilty", "Hidden"),
        title_nouns=("Witness", "Alibi", "Verdict", "Motive", "Case", "Confession", "Evidence",
                     "Suspect", "Ledger", "Pawn"),
        title_objects=("the Harbour", "Midnight", "Rain", "the Old Mill", "Broken Glass",
                       "Silence", "the Jury", "Small Lies"),
        protagonists=("a weary police detective", "a retired inspector",
                      "a forensic accountant", "a true-crime podcaster",
                      "a defence lawyer with a drinking problem", "a small-town sheriff",
                      "a master thief", "an amateur sleuth who runs a bookshop"),
        settings=("In a rain-soaked port city", "In a quiet seaside village",
                  "Among the old money families of the city",
                  "In the backstreets of a crowded capital",
                  "During a snowbound weekend at a country hotel",
                  "In a town where everyone has something to hide",
                  "Inside a prestigious law firm", "On an overnight train"),
        conflicts=("must solve a murder that the police have already closed",
                   "investigates a string of disappearances that no one wants to discuss",
                   "plans one last heist against a ruthless casino owner",
                   "is forced to defend a client everyone believes is guilty",
                   "follows a trail of forged paintings to a killer",
                   "reopens a cold case that cost a partner their life",
                   "uncovers the truth behind a locked-room poisoning",
                   "tracks a blackmailer through a web of old secrets"),
        hooks=("a locked-room murder", "a missing-persons case", "an elaborate heist",
               "a high-profile trial", "a blackmail scheme", "a series of anonymous letters",
               "a cold case", "a body in the library"),
        themes=("justice", "guilt", "secrets", "truth and lies", "obsession",
                "moral compromise"),
    ),
    Topic(
        name="espionage",
        style=(-0.3, 0.9),
        categories={"Thriller": 0.75, "Historical Fiction": 0.15, "Mystery": 0.1},
        tags=("spies", "political-intrigue", "cold-war"),
        title_adjectives=("Black", "Shadow", "Double", "Silent", "Red", "Covert", "Burning",
                          "Grey", "Iron", "Hidden"),
        title_nouns=("Agent", "Cipher", "Asset", "Dossier", "Protocol", "Border", "Embassy",
                     "Network", "Directive", "Gambit"),
        title_objects=("Berlin", "the Ministry", "Smoke", "the Curtain", "Shadows", "Vienna",
                       "the Dead Drop", "the Republic"),
        protagonists=("a burned intelligence officer", "a junior diplomat", "a codebreaker",
                      "a double agent", "an investigative journalist",
                      "a presidential speechwriter", "a retired assassin",
                      "an analyst who sees a pattern no one else does"),
        settings=("In divided Berlin at the height of the Cold War",
                  "Inside the corridors of a crumbling ministry",
                  "Across the embassies of a tense European capital",
                  "In a surveillance state on the brink of revolution",
                  "In the final weeks of a presidential campaign",
                  "Between Moscow, Vienna and Istanbul",
                  "Within a secret agency that officially does not exist",
                  "In a neutral city full of spies"),
        conflicts=("must expose a mole before the next exchange",
                   "is framed for a political assassination",
                   "races to stop a coup that is already underway",
                   "has to smuggle a defector across a closed border",
                   "uncovers a plot reaching the highest office",
                   "plays both sides of a negotiation that could start a war",
                   "decodes a message that could topple a government",
                   "goes rogue to protect a compromised source"),
        hooks=("a prisoner exchange", "a leaked dossier", "an assassination plot",
               "a hidden mole", "a disputed election", "a defection",
               "a stolen cipher machine", "a secret summit"),
        themes=("loyalty and betrayal", "power", "paranoia", "the price of secrecy",
                "political ambition", "trust"),
    ),
    Topic(
        name="love",
        style=(0.9, 0.0),
        categories={"Romance": 0.8, "Literary Fiction": 0.1, "Young Adult": 0.1},
        tags=("enemies-to-lovers", "second-chance"),
        title_adjectives=("Sweet", "Second", "Summer", "Unexpected", "Lovely", "Perfect",
                          "Golden", "Tender", "Reckless", "Starlit"),
        title_nouns=("Promise", "Kiss", "Heart", "Proposal", "Affair", "Vow", "Letter",
                     "Wedding", "Season", "Dance"),
        title_objects=("Paris", "Roses", "Summer", "the Heart", "Lavender", "the Vineyard",
                       "Second Chances", "Starlight"),
        protagonists=("a wedding planner who no longer believes in love", "a florist",
                      "a workaholic architect", "a widowed bakery owner",
                      "a famous actor hiding from the press", "a travel writer",
                      "an ambitious young chef", "a former childhood sweetheart"),
        settings=("In a seaside town every summer", "On a vineyard in the south of France",
                  "In a bustling New York newsroom",
                  "At a wedding that should never have happened",
                  "In a snowed-in mountain lodge", "In a small bookshop on a rainy street",
                  "On a cruise across the Mediterranean", "In a Regency ballroom"),
        conflicts=("falls for the one person who could ruin everything",
                   "is forced to share a house with an old rival",
                   "agrees to a fake engagement that becomes all too real",
                   "meets a stranger who seems to know every secret",
                   "must choose between a safe life and a reckless heart",
                   "reconnects with a first love after a decade apart",
                   "competes for a job against an infuriating colleague",
                   "writes anonymous letters to someone close by"),
        hooks=("a fake relationship", "a second chance at love", "a summer fling",
               "a forbidden romance", "a rivalry that turns into longing",
               "a marriage of convenience", "a love letter that was never sent",
               "a holiday romance"),
        themes=("love", "vulnerability", "second chances", "desire", "forgiveness",
                "belonging"),
    ),
    Topic(
        name="war",
        style=(-0.7, 0.0),
        categories={"Historical Fiction": 0.75, "Literary Fiction": 0.1, "Adventure": 0.15},
        tags=("world-war", "ancient-world", "military"),
        title_adjectives=("Iron", "Fallen", "Last", "Scarlet", "Broken", "Imperial",
                          "Forgotten", "Bitter", "Golden", "Winter"),
        title_nouns=("Legion", "Empire", "Soldier", "Banner", "Siege", "Campaign", "Emperor",
                     "Rebellion", "Fortress", "Garrison"),
        title_objects=("Rome", "the Somme", "Carthage", "the Eastern Front", "Kings", "Winter",
                       "the Empire", "Normandy"),
        protagonists=("a young nurse on the front lines", "a Roman centurion",
                      "a resistance courier", "a deserter", "a field surgeon",
                      "a general on the losing side", "a mapmaker in the service of the emperor",
                      "a fighter pilot"),
        settings=("In the trenches of the First World War",
                  "In the last days of the Roman Republic", "In occupied France",
                  "On the Eastern Front in the winter of 1942",
                  "In the court of the Ottoman sultans", "During the fall of Constantinople",
                  "In the shadow of the Napoleonic Wars",
                  "In the bombed streets of wartime London"),
        conflicts=("must carry a message through enemy lines",
                   "fights to keep a unit alive through an endless siege",
                   "hides refugees beneath the noses of the occupiers",
                   "is torn between duty and conscience",
                   "witnesses the collapse of an empire from inside the palace",
                   "leads a doomed rebellion against imperial rule",
                   "searches for a missing brother among the prisoners of war",
                   "records the truth of a battle that history would rather forget"),
        hooks=("a siege that lasts a winter", "a secret resistance network",
               "a doomed cavalry charge", "a rebellion against an emperor",
               "a prisoner-of-war camp", "a spy in the general staff",
               "a march across a frozen country", "a betrayal at court"),
        themes=("the cost of war", "courage", "sacrifice", "empire and its fall", "survival",
                "duty"),
    ),
    Topic(
        name="supernatural",
        style=(-1.2, 0.0),
        categories={"Horror": 0.8, "Mystery": 0.1, "Fantasy": 0.1},
        tags=("ghosts", "haunted-house", "folk-horror"),
        title_adjectives=("Hollow", "Pale", "Crooked", "Silent", "Drowned", "Black",
                          "Whispering", "Grim", "Rotten", "Buried"),
        title_nouns=("House", "Bones", "Hollow", "Grave", "Harvest", "Doll", "Chapel", "Woods",
                     "Mirror", "Cellar"),
        title_objects=("the Dead", "Blackwater", "Teeth", "the Marsh", "Hunger", "Bones",
                       "the Night", "Crows"),
        protagonists=("a paranormal investigator", "a grieving widow",
                      "a father who has just moved his family into an old house",
                      "a village priest", "a folklore student", "a night-shift nurse",
                      "a child who can hear the dead", "a caretaker at a remote asylum"),
        settings=("In a crumbling manor on the moors",
                  "In a village that still keeps the old harvest rites",
                  "In an abandoned asylum", "In a lakeside cabin far from help",
                  "Beneath a cathedral built on a plague pit",
                  "In a town where the fog never lifts",
                  "In a house that remembers everyone who died in it",
                  "On an island cut off by winter storms"),
        conflicts=("must survive the night as something scratches at the walls",
                   "discovers that the previous owners never really left",
                   "is haunted by a presence that knows every name",
                   "uncovers a pact made with something older than the church",
                   "tries to break a curse before the next full moon",
                   "realises that the neighbours have been lying for generations",
                   "follows strange lights into the woods",
                   "investigates a series of deaths foretold in an old diary"),
        hooks=("a haunting", "a demonic possession", "a cursed heirloom", "a village ritual",
               "a seance gone wrong", "a missing child in the woods", "a plague of nightmares",
               "a house that will not let go"),
        themes=("dread", "grief and the dead", "folklore", "madness", "the unknown", "evil"),
    ),
    Topic(
        name="family",
        style=(0.3, -0.7),
        categories={"Literary Fiction": 0.7, "Romance": 0.15, "Comedy": 0.15},
        tags=("family-saga", "small-town", "grief"),
        title_adjectives=("Quiet", "Ordinary", "Little", "Long", "Borrowed", "Homeward",
                          "Small", "Gentle", "Faded", "Kind"),
        title_nouns=("Harvest", "Kitchen", "Porch", "Orchard", "Inheritance", "Reunion",
                     "Garden", "Farmhouse", "Daughter", "Sunday"),
        title_objects=("Home", "Small Mercies", "the River", "Maple Street", "Apples",
                       "Sisters", "Late Summer", "the Valley"),
        protagonists=("the eldest of three estranged sisters", "a widowed farmer",
                      "a prodigal son", "a grandmother with a secret",
                      "a small-town pharmacist", "an adopted daughter",
                      "the heir to a family orchard", "a retired schoolteacher"),
        settings=("In a sleepy river town", "On a struggling family farm",
                  "In a house full of unopened letters",
                  "Over three generations in the American Midwest",
                  "In a fishing village on the Irish coast", "In a small Italian hill town",
                  "In a crowded apartment above the family shop",
                  "During the last summer before the family house is sold"),
        conflicts=("returns home for a funeral and finds the past waiting",
                   "tries to hold the family together after a sudden loss",
                   "uncovers a decades-old secret in the attic",
                   "must decide whether to sell the land that raised the family",
                   "cares for an ailing parent while rebuilding a life",
                   "confronts an old betrayal at a wedding",
                   "takes in a stranger who changes everything",
                   "reconnects with a brother who left without a word"),
        hooks=("a family reunion", "a contested inheritance", "a long-buried secret",
               "a funeral that brings everyone home", "a failing family business",
               "an unexpected pregnancy", "a house that must be sold",
               "a letter from a long-lost relative"),
        themes=("family", "grief", "home", "forgiveness", "memory", "small mercies"),
    ),
    Topic(
        name="coming-of-age",
        style=(0.6, 0.1),
        categories={"Young Adult": 0.75, "Literary Fiction": 0.15, "Comedy": 0.1},
        tags=("boarding-school", "first-love", "friendship"),
        title_adjectives=("Wild", "Young", "Electric", "Bright", "Last", "Brave", "Restless",
                          "Paper", "Neon", "Secret"),
        title_nouns=("Summer", "Year", "Club", "Rebel", "Friends", "Diary", "Anthem", "Locker",
                     "Campus", "Dreamers"),
        title_objects=("Seventeen", "Senior Year", "the Fearless", "Summer Nights", "Misfits",
                       "the Class", "Starlings", "Tomorrow"),
        protagonists=("a shy sixteen-year-old", "a scholarship student",
                      "a teenage skateboarder",
                      "an aspiring musician in the last year of school", "a new kid in town",
                      "the leader of a group of misfit friends", "a competitive swimmer",
                      "a girl who runs the school radio station"),
        settings=("At an elite boarding school", "In a suburban high school",
                  "During one unforgettable summer at camp",
                  "In a coastal town in the nineteen nineties",
                  "In the first chaotic year of university", "On a cross-country road trip",
                  "In a neighbourhood about to be demolished",
                  "In a small town with nothing to do"),
        conflicts=("navigates first love, betrayal and exams",
                   "starts a secret society that gets out of hand",
                   "enters a competition that nobody expects anyone to win",
                   "learns to stand up to a bully and a parent",
                   "searches for a missing best friend",
                   "slowly discovers who they really are",
                   "must choose between friends and a dream",
                   "tries to make the final summer count"),
        hooks=("a first crush", "a school dance", "a rivalry between friends", "a summer job",
               "a battle of the bands", "a secret kept from parents", "a graduation",
               "a road trip"),
        themes=("friendship", "identity", "growing up", "first love", "self-discovery",
                "courage"),
    ),
    Topic(
        name="collapse",
        style=(-0.9, 0.3),
        categories={"Dystopian": 0.7, "Science Fiction": 0.2, "Thriller": 0.1},
        tags=("post-apocalyptic", "climate-fiction", "survival"),
        title_adjectives=("Drowned", "Burning", "Last", "Grey", "Broken", "Barren", "Sunless",
                          "Ruined", "Silent", "Scorched"),
        title_nouns=("City", "Wall", "Harvest", "Flood", "Ration", "Tribe", "Season", "Exodus",
                     "Dust", "Reckoning"),
        title_objects=("Ash", "Dust", "the Flood", "the Wall", "Tomorrow", "the Drowned World",
                       "Salt", "Embers"),
        protagonists=("a water smuggler", "a teenage courier", "a climate scientist",
                      "a former soldier", "a seed keeper", "a rebel hacker",
                      "a mother searching for her son", "a member of the ruling council"),
        settings=("In a flooded future London", "After the collapse of the power grid",
                  "In a walled city that rations sunlight",
                  "Across a continent turned to desert",
                  "In a society where every citizen is scored",
                  "In the last seed vault on Earth", "After a pandemic emptied the cities",
                  "In a floating settlement above drowned coastlines"),
        conflicts=("must cross the wastelands to deliver a cure",
                   "joins an underground movement against the regime",
                   "discovers the truth about the lottery that decides who eats",
                   "fights to protect the last fertile valley",
                   "escapes the surveillance that governs every moment",
                   "leads a band of survivors toward a rumoured safe haven",
                   "uncovers what really caused the collapse",
                   "must choose between the collective and a single life"),
        hooks=("a rebellion against the regime", "a journey across a ruined country",
               "a deadly lottery", "a rationing crisis", "a rumoured safe haven",
               "a rising flood", "a surveillance network", "a cure that could save everyone"),
        themes=("survival", "climate change", "freedom", "resistance", "hope after collapse",
                "control"),
    ),
    Topic(
        name="sea",
        style=(0.1, 0.6),
        categories={"Adventure": 0.7, "Historical Fiction": 0.2, "Fantasy": 0.1},
        tags=("seafaring", "expedition"),
        title_adjectives=("Salt", "Northern", "Lost", "Uncharted", "Deep", "Distant", "Wild",
                          "Golden", "Frozen", "Storm"),
        title_nouns=("Voyage", "Compass", "Tide", "Island", "Passage", "Expedition", "Map",
                     "Harbour", "Captain", "Current"),
        title_objects=("the Deep", "Ice", "the Southern Sea", "the Lost Islands", "Coral",
                       "the North", "Salt", "Tides"),
        protagonists=("a young cabin boy", "a disgraced naval captain",
                      "a botanist on her first expedition", "a treasure hunter",
                      "a lighthouse keeper", "a polar explorer", "a smuggler captain",
                      "a cartographer"),
        settings=("On a whaling ship bound for the Antarctic", "Across the uncharted Pacific",
                  "In the age of sail", "On a remote archipelago",
                  "Deep in the Amazon rainforest", "Across the frozen Arctic",
                  "Along the ancient spice routes",
                  "Beneath the waves in a prototype submarine"),
        conflicts=("searches for a lost expedition",
                   "must navigate a storm that has swallowed ships for centuries",
                   "follows a forged map toward a legendary treasure",
                   "is shipwrecked on an island that appears on no chart",
                   "races a rival crew to the edge of the known world",
                   "leads a mutiny against a tyrannical captain",
                   "charts a passage that could change the course of trade",
                   "survives months adrift on the open ocean"),
        hooks=("a shipwreck", "a treasure map", "a mutiny at sea", "a polar expedition",
               "a race to an unclaimed island", "a sea monster legend",
               "a voyage around the world", "a rescue mission"),
        themes=("adventure", "the sea", "discovery", "endurance", "the unknown", "ambition"),
    ),
    Topic(
        name="art",
        style=(0.1, -0.5),
        categories={"Literary Fiction": 0.55, "Romance": 0.25, "Comedy": 0.2},
        tags=("music", "painters", "city-life"),
        title_adjectives=("Blue", "Midnight", "Velvet", "Painted", "Golden", "Quiet", "Broken",
                          "Wild", "Silver", "Last"),
        title_nouns=("Song", "Canvas", "Symphony", "Studio", "Melody", "Portrait", "Encore",
                     "Chord", "Gallery", "Muse"),
        title_objects=("Jazz", "Brooklyn", "the Orchestra", "Oils", "Strings", "Montmartre",
                       "Blue Notes", "the City"),
        protagonists=("a struggling jazz pianist", "a forger of old masters",
                      "a young violinist", "a fading rock star", "a gallery assistant",
                      "a street painter", "a session singer",
                      "a composer who is losing his hearing"),
        settings=("In the smoky jazz clubs of nineteen fifties Harlem", "In bohemian Paris",
                  "In a crumbling Brooklyn loft",
                  "Behind the scenes of a world-famous orchestra",
                  "In the art world of contemporary London",
                  "On a chaotic European concert tour", "In a Vienna music conservatory",
                  "In a small recording studio in Nashville"),
        conflicts=("chases one last chance at the big stage",
                   "is tempted to forge a painting that could make a fortune",
                   "must finish a symphony before the premiere",
                   "discovers an unknown masterpiece in a flea market",
                   "rebuilds a band after a bitter break-up",
                   "falls under the spell of a brilliant and cruel mentor",
                   "competes for a place in a legendary orchestra",
                   "searches for the muse behind a famous portrait"),
        hooks=("a comeback tour", "an art forgery", "a rivalry between musicians",
               "a lost masterpiece", "a disastrous premiere", "a record deal", "an audition",
               "a gallery opening"),
        themes=("art and ambition", "creativity", "fame", "music", "inspiration",
                "the price of talent"),
    ),
)

# Style vocabulary: axis 0 is tone (negative = dark, positive = light),
# axis 1 is pace (negative = slow, positive = fast).
TONE_DARK = ("bleak", "haunting", "unsettling", "brooding", "unflinching", "melancholy")
TONE_LIGHT = ("warm", "witty", "hopeful", "charming", "tender", "playful")
PACE_SLOW = ("meditative", "slow-burning", "lyrical", "quiet", "contemplative",
             "richly detailed")
PACE_FAST = ("propulsive", "breakneck", "twisty", "gripping", "action-packed", "relentless")
NEUTRAL = ("thoughtful", "absorbing", "well-crafted", "engaging", "assured", "ambitious")
STYLE_TAGS = ("dark", "feel-good", "slow-paced", "fast-paced", "atmospheric", "humorous")
GENERIC_TAGS = ("debut", "award-winner")

OPENING_TEMPLATES = (
    "{Setting}, {protagonist} {conflict}.",
    "{Protagonist} {conflict}.",
    "Set {setting}, this is the story of {protagonist} who {conflict}.",
)
MIDDLE_TEMPLATES = (
    "What begins as {hook_a} slowly turns into {hook_b}.",
    "Along the way, {hook_b} forces impossible choices.",
    "The plot weaves {hook_a} together with {hook_b}.",
    "Soon {hook_b} changes everything.",
)
STYLE_TEMPLATES = (
    "{Tone} and {pace}, it is a story about {theme_a} and {theme_b}.",
    "{a_tone}, {pace} novel about {theme_a}.",
    "The writing is {tone} and {pace}, with {theme_a} at its heart.",
    "At once {tone} and {pace}, the book explores {theme_a} and {theme_b}.",
)
CLOSING_SENTENCES = (
    "The first book in a planned trilogy.",
    "Told in alternating perspectives.",
    "Told through letters, diary entries and news clippings.",
    "Critics have praised its memorable characters.",
    "Critics have praised its sharp dialogue.",
    "Critics have praised its surprising ending.",
    "Readers single out its emotional depth.",
    "Readers single out its clever structure.",
    "A perfect choice for a long weekend.",
)
DEBUT_SENTENCE = "A debut that announced a major new voice."
AWARD_SENTENCE = "Winner of a national book prize."


# ---------------------------------------------------------------------------------- helpers
def _gumbel_top_k(rng: np.random.Generator, log_weights: np.ndarray, k: int) -> np.ndarray:
    """Indices of ``k`` draws without replacement, proportional to ``exp(log_weights)``."""
    keys = log_weights + rng.gumbel(size=log_weights.shape)
    return np.argsort(-keys, kind="stable")[:k]


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


def _with_article(word: str) -> str:
    return f"{'An' if word[0].lower() in 'aeiou' else 'A'} {word}"


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _style_word(rng: np.random.Generator, value: float, negative: tuple[str, ...],
                positive: tuple[str, ...]) -> str:
    # Weak styles read neutral, so only clear style positions leave a trace in the text.
    if value < -0.4:
        return _pick(rng, negative)
    if value > 0.4:
        return _pick(rng, positive)
    return _pick(rng, NEUTRAL)


# ---------------------------------------------------------------------------------- items
@dataclass
class LatentItems:
    """Latent item variables (never written; they drive every observable)."""

    topics: np.ndarray  # [I, K] topic mixture, rows sum to 1
    style: np.ndarray  # [I, 2] tone, pace
    quality: np.ndarray  # [I]
    log_popularity: np.ndarray  # [I], -inf for cold items
    release_time: np.ndarray  # [I] epoch seconds


def _sample_latent_items(rng: np.random.Generator) -> LatentItems:
    num_topics = len(TOPICS)
    # Topics differ in size (some genres are simply bigger), items are mostly one or two topics.
    prevalence = rng.dirichlet(np.full(num_topics, 6.0))
    topics = rng.dirichlet(0.2 * num_topics * prevalence, size=NUM_ITEMS)
    typical_style = np.array([topic.style for topic in TOPICS])
    style = topics @ typical_style + rng.normal(0.0, 0.8, size=(NUM_ITEMS, 2))
    quality = rng.normal(0.0, 1.0, size=NUM_ITEMS)
    # Power-law popularity: a Zipf curve over a random rank order, nudged by quality.
    ranks = rng.permutation(NUM_ITEMS) + 1.0
    log_popularity = -1.1 * np.log(ranks + 5.0) + 0.25 * quality
    cold = rng.choice(NUM_ITEMS, size=round(COLD_FRACTION * NUM_ITEMS), replace=False)
    log_popularity[cold] = -np.inf
    # Most of the catalogue predates the log; a fifth is released during it.
    new = rng.random(NUM_ITEMS) < 0.2
    release_time = np.where(
        new,
        START_TIME + rng.integers(0, SPAN_SECONDS - 60 * DAY, size=NUM_ITEMS),
        START_TIME - rng.integers(30 * DAY, 20 * 365 * DAY, size=NUM_ITEMS),
    )
    return LatentItems(topics, style, quality, log_popularity, release_time.astype(np.int64))


def _item_category(rng: np.random.Generator, topic: Topic, style: np.ndarray) -> str:
    names = list(topic.categories)
    probs = np.array([topic.categories[n] for n in names])
    if style[0] > 1.3 and "Comedy" not in topic.categories:
        # Very light books get shelved as comedy fairly often, whatever their subject.
        names.append("Comedy")
        probs = np.append(0.7 * probs, 0.3)
    return names[int(rng.choice(len(names), p=probs / probs.sum()))]


def _item_tags(rng: np.random.Generator, topics: np.ndarray, style: np.ndarray,
               debut: bool, award: bool) -> list[str]:
    names: list[str] = []
    weights: list[float] = []
    # Squared weights: a book is tagged mostly for what it is mainly about.
    emphasis = topics**2 / float((topics**2).sum())
    for k, topic in enumerate(TOPICS):
        for tag in topic.tags:
            names.append(tag)
            weights.append(emphasis[k] / len(topic.tags))
    tone, pace = style
    style_weights = (max(0.0, -tone - 0.3), max(0.0, tone - 0.3), max(0.0, -pace - 0.3),
                     max(0.0, pace - 0.3), max(0.0, -0.5 * (tone + pace) - 0.5),
                     max(0.0, tone - 1.0))
    names += list(STYLE_TAGS)
    weights += [0.25 * w for w in style_weights]
    weight = np.asarray(weights)
    # Only clearly relevant tags are candidates; one in ten books also gets a stray tag, as
    # user-applied tags do.
    relevant = np.flatnonzero(weight >= 0.04)
    if len(relevant) == 0:
        relevant = np.array([int(np.argmax(weight))])
    count = min(1 + int(rng.binomial(4, 0.45)), len(relevant))
    picked = relevant[_gumbel_top_k(rng, np.log(weight[relevant]), count)]
    chosen = [names[j] for j in picked]
    if rng.random() < 0.1 and len(chosen) < 5:
        stray = names[int(rng.integers(len(names)))]
        if stray not in chosen:
            chosen.append(stray)
    # Generic tags describe the book's history, not its content, and add a little noise.
    if debut and len(chosen) < 5:
        chosen.append("debut")
    if award and len(chosen) < 5:
        chosen.append("award-winner")
    return chosen


def _item_title(rng: np.random.Generator, topic: Topic, taken: set[str]) -> str:
    title = ""
    for _ in range(50):
        a = _pick(rng, topic.title_adjectives)
        n = _pick(rng, topic.title_nouns)
        o = _pick(rng, topic.title_objects)
        pattern = int(rng.integers(6))
        title = (f"The {a} {n}", f"{a} {n}", f"The {n} of {o}", f"{n} of {o}",
                 f"The Last {n}", f"{_with_article(n)} in {o}")[pattern]
        if title not in taken:
            break
    taken.add(title)
    return title


def _item_description(rng: np.random.Generator, topics: np.ndarray, style: np.ndarray,
                      debut: bool, award: bool) -> str:
    order = np.argsort(-topics, kind="stable")
    main = TOPICS[order[0]]
    # A strong second topic shows up in the plot sentence, so mixed books read mixed.
    second = TOPICS[order[1]] if topics[order[1]] >= 0.15 else main
    sentences = []
    setting = _pick(rng, main.settings)
    protagonist = _pick(rng, main.protagonists)
    # "the story of X who Y" reads badly when X already has a relative clause.
    openings = OPENING_TEMPLATES if " who " not in protagonist else OPENING_TEMPLATES[:2]
    opening = _pick(rng, openings)
    sentences.append(opening.format(Setting=setting, setting=_lower_first(setting),
                                    protagonist=protagonist,
                                    Protagonist=_capitalize(protagonist),
                                    conflict=_pick(rng, main.conflicts)))
    include_middle = rng.random() < 0.75
    include_style = rng.random() < 0.8 or not include_middle
    include_closing = rng.random() < 0.4 or debut or award
    if include_middle:
        hook_a = _pick(rng, main.hooks)
        hook_b = _pick(rng, second.hooks)
        while hook_b == hook_a:
            hook_b = _pick(rng, second.hooks)
        sentences.append(_capitalize(_pick(rng, MIDDLE_TEMPLATES).format(hook_a=hook_a,
                                                                         hook_b=hook_b)))
    if include_style:
        tone = _style_word(rng, style[0], TONE_DARK, TONE_LIGHT)
        pace = _style_word(rng, style[1], PACE_SLOW, PACE_FAST)
        if pace == tone:
            pace = _pick(rng, NEUTRAL[:3]) if tone not in NEUTRAL[:3] else "memorable"
        theme_a = _pick(rng, main.themes)
        theme_b = _pick(rng, second.themes)
        while theme_b == theme_a:
            theme_b = _pick(rng, main.themes)
        sentences.append(_pick(rng, STYLE_TEMPLATES).format(
            Tone=_capitalize(tone), tone=tone, a_tone=_with_article(tone), pace=pace,
            theme_a=theme_a, theme_b=theme_b))
    if include_closing:
        if award:
            sentences.append(AWARD_SENTENCE)
        elif debut:
            sentences.append(DEBUT_SENTENCE)
        else:
            sentences.append(_pick(rng, CLOSING_SENTENCES))
    return " ".join(sentences)


def _build_items(rng: np.random.Generator, latent: LatentItems) -> pd.DataFrame:
    rows = []
    taken: set[str] = set()
    debut = rng.random(NUM_ITEMS) < 0.08
    award = rng.random(NUM_ITEMS) < 0.05
    for i in range(NUM_ITEMS):
        topics, style = latent.topics[i], latent.style[i]
        main = TOPICS[int(np.argmax(topics))]
        rows.append({
            "item_id": f"i{i + 1:04d}",
            "title": _item_title(rng, main, taken),
            "description": _item_description(rng, topics, style, bool(debut[i]), bool(award[i])),
            "category": _item_category(rng, main, style),
            "tags": "|".join(_item_tags(rng, topics, style, bool(debut[i]), bool(award[i]))),
        })
    return pd.DataFrame(rows, columns=["item_id", "title", "description", "category", "tags"])


# ---------------------------------------------------------------------------------- users
@dataclass
class LatentUsers:
    """Latent user variables (never written)."""

    topics: np.ndarray  # [U, K]
    style: np.ndarray  # [U, 2]
    bias: np.ndarray  # [U] rating leniency
    activity: np.ndarray  # [U] number of interactions
    start: np.ndarray  # [U] first active second
    end: np.ndarray  # [U] last active second


def _sample_latent_users(rng: np.random.Generator) -> LatentUsers:
    num_topics = len(TOPICS)
    focused = rng.random(NUM_USERS) < 0.25
    broad = rng.dirichlet(np.full(num_topics, 0.3), size=NUM_USERS)
    anchor = np.eye(num_topics)[rng.integers(num_topics, size=NUM_USERS)]
    near_one = 0.85 * anchor + 0.15 * rng.dirichlet(np.ones(num_topics), size=NUM_USERS)
    topics = np.where(focused[:, None], near_one, broad)
    style = rng.normal(0.0, 0.8, size=(NUM_USERS, 2))
    bias = rng.normal(0.0, 0.4, size=NUM_USERS)
    raw = np.exp(rng.normal(np.log(50.0), 0.85, size=NUM_USERS))
    activity = np.clip(np.round(raw * TARGET_INTERACTIONS / raw.sum()), 10, 600).astype(np.int64)
    start = START_TIME + rng.integers(0, int(0.85 * SPAN_SECONDS), size=NUM_USERS)
    duration = rng.integers(45 * DAY, SPAN_SECONDS, size=NUM_USERS)
    end = np.minimum(start + duration, START_TIME + SPAN_SECONDS - 1)
    return LatentUsers(topics, style, bias, activity, start.astype(np.int64),
                       end.astype(np.int64))


def _affinity(users: LatentUsers, items: LatentItems) -> np.ndarray:
    """Taste match [U, I]: log topic overlap plus style agreement (popularity excluded)."""
    overlap = users.topics @ items.topics.T
    return 2.5 * np.log(overlap + 0.01) + 0.6 * (users.style @ items.style.T)


def _build_interactions(rng: np.random.Generator, users: LatentUsers, items: LatentItems,
                        affinity: np.ndarray) -> pd.DataFrame:
    # Standardise affinity over plausible pairs so the rating scale does not depend on sizes.
    centre, scale = float(affinity.mean()), float(affinity.std())
    user_col, item_col, rating_col, time_col = [], [], [], []
    for u in range(NUM_USERS):
        eligible = items.release_time < users.end[u] - DAY
        log_w = np.where(eligible, affinity[u] + items.log_popularity, -np.inf)
        count = min(int(users.activity[u]), int(np.isfinite(log_w).sum()))
        chosen = np.sort(_gumbel_top_k(rng, log_w, count))
        z = (affinity[u, chosen] - centre) / scale
        latent = (2.7 + 0.75 * z + 0.35 * items.quality[chosen] + users.bias[u]
                  + rng.normal(0.0, 0.7, size=count))
        ratings = np.clip(np.rint(latent), 1, 5).astype(np.int64)
        lo = np.maximum(users.start[u], items.release_time[chosen])
        hi = users.end[u]
        times = lo + np.floor(rng.random(count) * (hi - lo)).astype(np.int64)
        user_col.append(np.full(count, u))
        item_col.append(chosen)
        rating_col.append(ratings)
        time_col.append(times)
    frame = pd.DataFrame({
        "u": np.concatenate(user_col), "i": np.concatenate(item_col),
        "rating": np.concatenate(rating_col), "timestamp": np.concatenate(time_col),
    })
    frame = frame.sort_values(["u", "timestamp", "i"], kind="stable").reset_index(drop=True)
    return pd.DataFrame({
        "user_id": [f"u{u + 1:04d}" for u in frame["u"]],
        "item_id": [f"i{i + 1:04d}" for i in frame["i"]],
        "rating": frame["rating"].astype(np.int64),
        "timestamp": frame["timestamp"].astype(np.int64),
    })


def _build_user_edges(rng: np.random.Generator, users: LatentUsers) -> pd.DataFrame:
    norm = users.topics / np.linalg.norm(users.topics, axis=1, keepdims=True)
    similarity = norm @ norm.T
    # Over-dispersed friend counts: many readers have a few friends, some have none.
    wanted = rng.negative_binomial(1.2, 1.2 / (1.2 + 3.2), size=NUM_USERS)
    pairs: set[tuple[int, int]] = set()
    for u in range(NUM_USERS):
        k = int(min(wanted[u], 40))
        if k == 0:
            continue
        log_w = 8.0 * similarity[u]
        log_w[u] = -np.inf
        for v in _gumbel_top_k(rng, log_w, k):
            pairs.add((min(u, int(v)), max(u, int(v))))
    ordered = sorted(pairs)
    return pd.DataFrame({
        "user_id": [f"u{a + 1:04d}" for a, _ in ordered],
        "friend_id": [f"u{b + 1:04d}" for _, b in ordered],
    })


# ---------------------------------------------------------------------------------- entry
def generate(seed: int = SEED) -> dict[str, pd.DataFrame]:
    """Generate the demo tables.

    Args:
        seed (int): Seed of the single :class:`numpy.random.Generator` that drives
            everything. (default: :obj:`SEED`)

    Returns:
        dict[str, pandas.DataFrame]: ``{"interactions": ..., "items": ..., "user_edges": ...}``
        with the columns written to the CSV files of the same names.
    """
    rng = np.random.default_rng(seed)
    latent_items = _sample_latent_items(rng)
    latent_users = _sample_latent_users(rng)
    items = _build_items(rng, latent_items)
    affinity = _affinity(latent_users, latent_items)
    interactions = _build_interactions(rng, latent_users, latent_items, affinity)
    user_edges = _build_user_edges(rng, latent_users)
    return {"interactions": interactions, "items": items, "user_edges": user_edges}


def write(out_dir: Path, seed: int = SEED) -> list[Path]:
    """Generate the tables and write them as UTF-8 CSV files with ``\\n`` line endings.

    Args:
        out_dir (pathlib.Path): Target folder (created if missing).
        seed (int): See :func:`generate`. (default: :obj:`SEED`)

    Returns:
        list[pathlib.Path]: The files written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, frame in generate(seed).items():
        path = out_dir / f"{name}.csv"
        frame.to_csv(path, index=False, lineterminator="\n", encoding="utf-8")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                        help="folder to write the CSV files to (default: next to this script)")
    parser.add_argument("--seed", type=int, default=SEED,
                        help=f"random seed (default: {SEED}; the shipped files use the default)")
    args = parser.parse_args(argv)
    for path in write(args.out, args.seed):
        print(f"wrote {path} ({sum(1 for _ in path.open(encoding='utf-8')) - 1} rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
