"""Word lists and templates for the synthetic SQuAD generator (``synth.py``).

Each fact has several context sentences and, for each answerable slot, several question
paraphrases that avoid the context's wording where English allows it (so that the task is not
pure string matching). Placeholders: ``{subj}`` sentence subject (name or pronoun), ``{poss}``
possessive (``Ana Silva's`` / ``her``), ``{ref}``/``{ref_poss}`` how a question names the person.
"""
from __future__ import annotations

FIRST_NAMES = {
    "f": ["Ana", "Beatrice", "Clara", "Dana", "Elena", "Fatima", "Grace", "Hannah", "Ingrid", "Julia",
          "Keiko", "Lena", "Maya", "Nadia", "Olivia", "Priya", "Rosa", "Sofia", "Tara", "Ursula",
          "Vera", "Wanda", "Yara", "Zoe", "Amara", "Greta", "Leila", "Marta", "Noor", "Irene"],
    "m": ["Adam", "Boris", "Carlos", "Daniel", "Emil", "Felix", "Gustav", "Hugo", "Ivan", "Jonas",
          "Kenji", "Luca", "Marco", "Nikolai", "Omar", "Pablo", "Rafael", "Samuel", "Tomas", "Viktor",
          "Walter", "Xavier", "Yusuf", "Anton", "Bruno", "Dmitri", "Elias", "Henrik", "Milan", "Oscar"],
}
PRONOUNS = {"f": ("She", "her"), "m": ("He", "his")}
SURNAMES = [
    "Silva", "Moreno", "Novak", "Larsen", "Okafor", "Tanaka", "Weber", "Rossi", "Kowalski", "Dubois",
    "Haddad", "Petrov", "Jensen", "Costa", "Fischer", "Nakamura", "Horvat", "Lindqvist", "Mendes", "Varga",
    "Schmidt", "Bianchi", "Ivanova", "Kaplan", "Santos", "Berger", "Romero", "Sato", "Brennan", "Adeyemi",
    "Kruger", "Marsh", "Quinn", "Reyes", "Stone", "Park", "Ferreira", "Nilsson", "Duarte", "Hale",
]
CITIES = [
    "Lisbon", "Oslo", "Krakow", "Porto", "Lyon", "Turin", "Leeds", "Munich", "Kyoto", "Lagos",
    "Dublin", "Valencia", "Gdansk", "Bergen", "Seville", "Osaka", "Geneva", "Nairobi", "Quebec", "Tallinn",
    "Vienna", "Prague", "Boston", "Denver", "Madrid", "Athens", "Cairo", "Lima", "Bogota", "Helsinki",
    "Glasgow", "Hamburg", "Naples", "Zagreb", "Riga", "Cardiff", "Ghent", "Utrecht", "Bristol", "Malmo",
]
PROFESSIONS = [
    "chemist", "architect", "nurse", "pilot", "librarian", "carpenter", "journalist", "surgeon",
    "engineer", "baker", "lawyer", "geologist", "teacher", "photographer", "translator", "electrician",
    "pharmacist", "economist", "veterinarian", "astronomer", "plumber", "historian", "editor", "dentist",
]
# With "the" where English wants it, so that "the Harbor Institute" and "Harbor Institute" are
# both gold answers on dev, as annotators would write them.
EMPLOYERS = [
    "the Harbor Institute", "the City Museum", "the Royal Observatory", "the Northern Hospital",
    "the State Library", "the Maritime Academy", "the Central Bank", "the National Archive",
    "Northwind Bank", "Silverline Labs", "Bluefield Motors", "Redwood Press", "Ironbridge Foods",
    "Greenway Energy", "Brightwater Clinic", "Oakmont Studios", "Stonegate Airlines", "Fairport Shipping",
    "Crescent Pharmaceuticals", "Summit Engineering", "Lakeside Bakery", "Westbrook Law",
]
INSTRUMENTS = ["cello", "violin", "piano", "trumpet", "flute", "guitar", "clarinet", "harp", "drums",
               "saxophone", "accordion", "banjo", "oboe", "trombone"]
PET_KINDS = ["dog", "cat", "parrot", "rabbit", "tortoise", "horse", "goat", "hamster"]
PET_NAMES = ["Biscuit", "Pepper", "Luna", "Rocket", "Mango", "Ziggy", "Clover", "Noodle", "Shadow",
             "Maple", "Pickle", "Comet", "Waffle", "Juniper", "Bramble", "Sprout", "Tofu", "Hazel"]
RELATIONS = {"f": ["sister", "mother", "daughter", "aunt", "cousin"],
             "m": ["brother", "father", "son", "uncle", "cousin"]}
YEARS_BORN = range(1940, 2001)
YEARS_MOVED = range(2001, 2024)

# fact -> context sentence templates. Every answerable slot appears exactly once per sentence.
FACT_SENTENCES = {
    "birth": ["{subj} was born in {born_city} in {born_year}.",
              "{subj} was born in {born_year} in the city of {born_city}."],
    "job": ["{subj} works as {art_profession} at {employer}.",
            "{subj} is {art_profession} employed by {employer}."],
    "move": ["{subj} moved to {moved_city} in {moved_year}.",
             "In {moved_year}, {subj_mid} relocated to {moved_city}."],
    "music": ["{subj} plays the {instrument}.",
              "In {poss} spare time, {subj_mid} plays the {instrument}."],
    "pet": ["{subj} has {art_pet_kind} named {pet_name}.",
            "{subj} owns {art_pet_kind} called {pet_name}."],
}
FACT_SLOTS = {"birth": ["born_city", "born_year"], "job": ["profession", "employer"],
              "move": ["moved_city", "moved_year"], "music": ["instrument"], "pet": ["pet_name", "pet_kind"]}

# slot -> question paraphrases.
QUESTIONS = {
    "born_city": ["Where was {ref} born?", "What is the birthplace of {ref}?",
                  "In which city was {ref} born?", "Which city is {ref} originally from?"],
    "born_year": ["When was {ref} born?", "In what year was {ref} born?",
                  "What is {ref_poss} year of birth?", "Which year did {ref} come into the world?"],
    "profession": ["What does {ref} do for a living?", "What is {ref_poss} profession?",
                   "What is {ref_poss} occupation?", "What job does {ref} have?"],
    "employer": ["Who employs {ref}?", "Which organisation does {ref} work for?",
                 "Where is {ref} employed?", "Who is {ref_poss} employer?"],
    "moved_city": ["Where did {ref} move to?", "To which city did {ref} relocate?",
                   "Which city did {ref} move to?", "Where has {ref} lived since moving?"],
    "moved_year": ["When did {ref} move to {moved_city}?", "In what year did {ref} relocate?",
                   "In which year did {ref} settle in {moved_city}?"],
    "instrument": ["What instrument does {ref} play?", "Which instrument does {ref} play?",
                   "What does {ref} play in spare time?"],
    "pet_name": ["What is the name of {ref_poss} {pet_kind}?", "What is {ref_poss} {pet_kind} called?",
                 "What did {ref} name the {pet_kind}?"],
    "pet_kind": ["What kind of animal does {ref} keep?", "What pet does {ref} have?",
                 "Which animal is {pet_name}?"],
}

# Distractor sentences about a relative: the same slot types, never asked about.
RELATIVE_SENTENCES = [
    "{poss_cap} {relation} {rel_first} was born in {rel_city} in {rel_year}.",
    "{poss_cap} {relation} {rel_first} works as {rel_art_profession} in {rel_city}.",
    "{poss_cap} {relation} {rel_first} moved to {rel_city} in {rel_year}.",
    "{poss_cap} {relation} {rel_first} plays the {rel_instrument}.",
]

# Words that may stand before an answer in its context; on dev they give extra gold answers
# ("in Lisbon", "a chemist"), the way SQuAD's annotators differ on what to include.
ANSWER_PREFIXES = ("in ", "the ", "a ", "an ", "the city of ", "in the city of ")
