"""Word lists the realistic fakes are picked from.

Written out here rather than drawn from Faker at run time on purpose: a masked value must stay
the same across runs *and library versions* (so staging refreshed next month still joins with
fixtures, screenshots and bug reports from this month), and Faker's locale data changes between
releases. Changing these lists changes every masked value — treat them as frozen.
"""

FIRST_NAMES = (
    "Aaron Abigail Adrian Aisha Alan Alba Alex Alice Amara Amir Ana Andre Anna Anton Ari Arjun "
    "Astrid Ben Bianca Boris Bruno Carla Carlos Carmen Chen Chiara Chris Clara Colin Dana Daniel "
    "Daria Dev Diego Dina Dmitri Elena Eli Elif Emil Emma Enzo Erik Esra Eva Farah Felix Fiona "
    "Frank Freya Gabriel Greta Hana Hannah Hugo Ian Ida Igor Ines Irene Isaac Ivan Jade Jakob "
    "James Jana Jonas Josef Julia Kai Karim Kate Kenji Kira Lars Laura Lea Leon Lina Luca Lucia "
    "Luis Maja Malik Marco Maria Mark Marta Mateo Maya Mia Milan Mira Nadia Nico Nina Noah Nora "
    "Olga Omar Oscar Paula Pavel Petra Priya Rafael Rania Ravi Rosa Ruben Sara Sean Selin Simon "
    "Sofia Stefan Tara Teo Theo Tom Uma Vera Victor Wen Yara Yusuf Zara Zoe"
).split()

LAST_NAMES = (
    "Abbott Acosta Adler Ahmed Albers Alvarez Andersen Arnold Bauer Becker Berger Blom Brandt "
    "Brooks Carter Castro Chandra Clarke Costa Cruz Dahl Davies Diaz Dietrich Dubois Eriksen "
    "Evans Falk Fischer Fleming Fox Franke Garcia Graham Gray Gupta Haas Hansen Hartmann Hayes "
    "Hoffmann Holm Horvat Hughes Ibrahim Ivanova Jansen Jensen Kaiser Keller Khan Kim Klein "
    "Koch Kovacs Kraus Lange Larsen Lehmann Lindqvist Lopez Lorenz Maier Marin Meyer Moreau "
    "Morris Nagy Nielsen Novak Nowak Olsen Ortiz Otto Park Patel Perez Peters Petrov Popescu "
    "Quinn Ramos Reed Reyes Richter Rossi Roth Santos Sato Schmidt Schulz Silva Singh Sommer "
    "Stone Suzuki Tanaka Torres Vogel Wagner Walsh Weber Wolf Wright Yilmaz Young Zhang Ziegler"
).split()

COMPANY_WORDS = (
    "Alder Apex Arc Atlas Aurora Basalt Beacon Birch Bolt Brook Cascade Cedar Cobalt Comet Copper "
    "Crest Delta Drift Ember Falcon Fern Flint Forge Garnet Granite Harbor Helix Heron Indigo "
    "Iron Juniper Keystone Kestrel Lumen Maple Meridian Mesa Nimbus North Oak Onyx Orbit Osprey "
    "Pine Pinnacle Prairie Quarry Quartz Raven Ridge River Sable Sage Slate Solstice Spruce "
    "Summit Tandem Terra Thistle Tidal Timber Torrent Vale Vector Willow Zenith"
).split()

COMPANY_TRADES = (
    "Components Controls Dynamics Engineering Fabrication Fasteners Fluidics Foundry Hydraulics "
    "Industries Instruments Logistics Machining Materials Metals Motion Plastics Polymers "
    "Precision Processing Robotics Supply Systems Technologies Tooling Works"
).split()

COMPANY_SUFFIXES = ("GmbH", "Ltd", "Inc", "AG", "LLC", "S.A.", "B.V.", "Oy", "AB", "Co.")

MAIL_DOMAINS = (
    "mail.example", "post.example", "inbox.example", "corp.example", "plant.example",
    "works.example", "supply.example", "office.example",
)

STREET_NAMES = (
    "Mill Station Harbor Church Market Bridge Forge Orchard Canal Meadow Quarry Railway Garden "
    "Foundry Lake River Hill Park Spring Willow Cedar Elm Ash Linden Chestnut Kiln Weaver Cooper "
    "Tanner Mason"
).split()

STREET_TYPES = ("Street", "Road", "Lane", "Avenue", "Way", "Drive", "Court", "Place", "Row")

CITIES = (
    "Ashford Bellmont Brackenridge Caldwell Dunmore Eastwick Fairhaven Glenrock Harwick Ironbridge "
    "Kingsbury Lakemont Millbrook Northam Oakridge Pinecrest Queensford Redhill Stonebridge "
    "Thornbury Upton Valemont Westfield Woodbury Yarmouth"
).split()
