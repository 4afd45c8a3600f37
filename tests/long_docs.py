"""A long test document whose last paragraph is about something else: a query about that paragraph
finds the document only when its end is embedded (chunking), never when the model truncates it."""
from __future__ import annotations

LONG_ID = "long-harpsichord"
HEAD = (
    "The harpsichord was the principal keyboard instrument of European music for nearly three centuries. "
    "Unlike the piano, which strikes its strings with felt hammers, the harpsichord plucks each string with a small "
    "plectrum called a quill, mounted on a wooden jack that rises when the key is pressed. Because the pluck is the "
    "same whether the player presses gently or firmly, the instrument cannot make one note louder than another by touch "
    "alone. Builders answered this with several sets of strings, called choirs, that the player could combine with "
    "hand stops or pedals, and with a second keyboard that could be coupled to the first. "
    "The great building centres were Antwerp, where the Ruckers family produced instruments prized for their tone, "
    "and later Paris, where craftsmen enlarged old Flemish harpsichords in a process known as ravalement to extend "
    "their range. Italian makers preferred lighter cases of cypress wood and a bright, quickly decaying sound. "
    "Composers such as Couperin, Rameau, Scarlatti and Bach wrote suites, sonatas and preludes that exploit ornaments, "
    "arpeggiated chords and crisp articulation, since a sustained singing line was hard to achieve. "
    "By the end of the eighteenth century the fortepiano, with its ability to play both soft and loud, had displaced "
    "the harpsichord in concert halls and homes, and many old instruments were burned for firewood or left to decay. "
    "The revival began around 1900, when Arnold Dolmetsch in England and Wanda Landowska in France championed the "
    "instrument again, first with heavy iron-framed designs and later, from the 1950s, with faithful copies of historical "
    "models built by Frank Hubbard and William Dowd. Today the harpsichord is central to historically informed "
    "performance of baroque music, and players tune it in unequal temperaments that give each key its own character. "
    "Maintaining one is a constant task: the quills wear and must be revoiced, and the tuning drifts with every change "
    "in humidity in the room where it stands."
)
# Only the end of the document is about this; the model never sees it when it truncates at 256 tokens.
TAIL = (
    "\n\nA note on a different subject, kept at the end of this file: in Iceland, the meat of the Greenland shark is "
    "poisonous when fresh, so it is buried in gravel for several weeks to press out the fluids and then hung in an "
    "open shed to dry for four or five months. The result, called hakarl, smells strongly of ammonia and is served "
    "in small cubes at the midwinter festival of Thorrablot."
)
TAIL_QUERY = "why is Greenland shark meat buried in gravel and dried for months in Iceland"
LONG_DOC = {"id": LONG_ID, "title": "The harpsichord", "body": HEAD + TAIL, "topic": "music", "year": 2024}
LONG_TEXT = f"{LONG_DOC['title']}\n\n{LONG_DOC['body']}"  # as prepare joins title and body
