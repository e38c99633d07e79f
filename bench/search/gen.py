#!/usr/bin/env python3
"""Synthetic patients and Observations for the search benchmark (issue 22), deterministic.

    gen.py N OUTDIR      writes OUTDIR/patients.ndjson and OUTDIR/observations.ndjson

Patient i has the id p<i>; its Observations refer to Patient/p<i> (loaders rewrite the
references to what their server assigns). Names follow a skewed distribution: 60% from the
most common US surnames and given names (weights close to the 2010 census and SSA lists, a
few with accents), 40% from a long tail of composed surnames that share prefixes. Birthdates
span 1925-2025; postal codes cluster in ~300 ZIP codes of a few cities. Each patient has
15-25 Observations (vital-signs about 60%, laboratory 40%, LOINC codes, UCUM units), their
effectiveDateTime spread over 2014-2026. Stdlib only.
"""
import json
import os
import random
import sys

SEED = 22
SURNAMES = """Smith 828 Johnson 655 Williams 551 Brown 487 Jones 483 Garcia 391 Miller 375
Davis 371 Rodriguez 346 Martinez 341 Hernandez 336 Lopez 282 Gonzalez 279 Wilson 273
Anderson 266 Thomas 257 Taylor 256 Moore 241 Jackson 238 Martin 235 Lee 223 Perez 199
Thompson 197 White 195 Harris 184 Sanchez 183 Clark 169 Ramirez 163 Lewis 163 Robinson 161
Walker 158 Young 150 Allen 150 King 150 Wright 148 Scott 144 Torres 142 Nguyen 139 Hill 138
Flores 136 Green 135 Adams 133 Nelson 132 Baker 128 Hall 127 Rivera 123 Campbell 123
Mitchell 122 Carter 121 Roberts 121 Gomez 113 Phillips 111 Evans 109 Turner 109 Diaz 109
Parker 107 Cruz 106 Edwards 105 Collins 104 Reyes 103 Stewart 102 Morris 100 Morales 99
Murphy 99 Cook 97 Rogers 96 Gutierrez 94 Ortiz 93 Morgan 92 Cooper 92 Peterson 92 Bailey 91
Reed 91 Kelly 89 Howard 88 Ramos 87 Kim 87 Cox 86 Ward 85 Richardson 84 Watson 83 Brooks 82
Chavez 81 Wood 81 James 80 Bennett 79 Gray 79 Mendoza 78 Ruiz 77 Hughes 76 Price 76 Alvarez 76
Castillo 74 Sanders 74 Patel 72 Myers 72 Long 72 Ross 71 Foster 71 Jimenez 71 Powell 70
Marshall 68 Martins 30 Marino 25 Márquez 40 Müller 20 Peña 35 Núñez 30 O'Brien 30 Søndergaard 5
Dubois 15 Lefèvre 10 Schröder 8 Ibáñez 12 Novák 6 Kowalski 12 Nowak 10""".split()
GIVEN_F = """Mary 300 Patricia 120 Jennifer 140 Linda 110 Elizabeth 110 Barbara 100 Susan 90
Jessica 90 Sarah 85 Karen 80 Lisa 75 Nancy 70 Betty 60 Margaret 60 Sandra 60 Ashley 70
Kimberly 60 Emily 70 Donna 50 Michelle 55 Carol 45 Amanda 55 Dorothy 40 Melissa 50
Deborah 40 Stephanie 45 Rebecca 40 Sharon 35 Laura 40 Cynthia 35 Maria 60 Marie 30 Marta 10
Martha 25 Madison 30 Mariana 10 Olivia 45 Emma 50 Sophia 40 Isabella 35 Chloé 10 Zoë 8
Renée 8 Inés 6 Ana 20 Ann 25 Anna 25""".split()
GIVEN_M = """James 300 Robert 290 John 280 Michael 270 David 240 William 230 Richard 180 Joseph 170
Thomas 160 Charles 150 Christopher 140 Daniel 140 Matthew 120 Anthony 110 Mark 100 Donald 90
Steven 90 Paul 80 Andrew 80 Joshua 80 Kenneth 70 Kevin 70 Brian 70 George 65 Timothy 60
Ronald 60 Jason 60 Edward 55 Jeffrey 55 Ryan 55 Jacob 50 Gary 45 Nicholas 45 Eric 45
Jonathan 45 Stephen 40 Larry 35 Justin 35 Scott 35 Brandon 35 Benjamin 35 Samuel 30
Gregory 30 Alexander 30 Frank 30 Patrick 30 Raymond 25 Jack 25 Dennis 25 Jerry 25 Tyler 25
José 40 Juan 30 Luis 30 Carlos 30 Jesús 15 Martin 20 Marco 15 Marcus 15 Liam 40 Noah 40
Mohammed 15 Wei 10 Minh 8""".split()
ONSETS = ("Ab Al Bar Ber Bra Cal Car Cha Col Cor Dal Dar Del Don Dun Eb El Far Fen Fitz Gal Gar "
          "Gil Gor Hal Har Hel Hol Kar Kel Ken Kor Lan Lar Lin Mac Mal Man Mar Mc Mer Mor Nor Oak "
          "Pal Par Pem Pen Ral Ram Red Ros Sal San Sel Sher Stan Sto Tal Tam Ter Thor Val Van Ver "
          "Wal War Wes Whit Win Yar Zel").split()
MIDDLES = "a e i o u an ar el en er il in on or ow am ing".split()
ENDINGS = ("berg bert by croft dale den don field ford gate ham hart land ley lin low man mann "
           "mer more nett rick ridge ro sen set son ston ton vich well wick win wood worth").split()
CITIES = [("Springfield", "MA", "011"), ("Worcester", "MA", "016"), ("Boston", "MA", "021"),
          ("Cambridge", "MA", "021"), ("Providence", "RI", "029"), ("Hartford", "CT", "061"),
          ("New Haven", "CT", "065"), ("Albany", "NY", "122")]
STREETS = "Main Oak Maple Pine Cedar Elm Washington Lake Hill Park Church High School Mill".split()
VITALS = [("8867-4", "Heart rate", "/min", 50, 110), ("8480-6", "Systolic blood pressure",
          "mm[Hg]", 95, 170), ("8462-4", "Diastolic blood pressure", "mm[Hg]", 55, 105),
          ("8310-5", "Body temperature", "Cel", 36.0, 38.5), ("9279-1", "Respiratory rate",
          "/min", 10, 24), ("29463-7", "Body weight", "kg", 3, 140), ("8302-2", "Body height",
          "cm", 50, 200), ("39156-5", "Body mass index", "kg/m2", 15, 45),
          ("59408-5", "Oxygen saturation", "%", 88, 100)]
LABS = [("2345-7", "Glucose", "mg/dL", 60, 250), ("2160-0", "Creatinine", "mg/dL", 0.4, 3.0),
        ("718-7", "Hemoglobin", "g/dL", 8, 18), ("4548-4", "Hemoglobin A1c", "%", 4, 12),
        ("2093-3", "Cholesterol", "mg/dL", 120, 320), ("2571-8", "Triglyceride", "mg/dL", 40, 400),
        ("6690-2", "Leukocytes", "10*3/uL", 3, 15), ("777-3", "Platelets", "10*3/uL", 120, 450),
        ("2951-2", "Sodium", "mmol/L", 128, 150), ("2823-3", "Potassium", "mmol/L", 3.0, 5.8)]
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


def weighted(words):
    return words[0::2], [int(w) for w in words[1::2]]


def zipcodes(rng):
    """~300 ZIP codes, each with its city, and a skewed weight (a hospital's catchment)."""
    zips = []
    for city, state, prefix in CITIES:
        for _ in range(38):
            zips.append((city, state, f"{prefix}{rng.randrange(100):02d}"))
    return zips, [1.0 / (k + 1) ** 0.7 for k in range(len(zips))]


def long_tail(rng, n=20000):
    names = set()
    while len(names) < n:
        mid = rng.choice(MIDDLES) if rng.random() < 0.5 else ""
        names.add(rng.choice(ONSETS) + mid + rng.choice(ENDINGS))
    names = sorted(names)
    rng.shuffle(names)
    return names, [1.0 / (k + 1) ** 0.6 for k in range(n)]


class Gen:
    def __init__(self):
        self.rng = random.Random(SEED)
        self.sur, self.sur_w = weighted(SURNAMES)
        self.gf, self.gf_w = weighted(GIVEN_F)
        self.gm, self.gm_w = weighted(GIVEN_M)
        self.zips, self.zip_w = zipcodes(self.rng)
        self.tail, self.tail_w = long_tail(self.rng)

    def pick(self, values, weights, k=1):
        return self.rng.choices(values, weights, k=k)

    def patient(self, i):
        r = self.rng
        female = r.random() < 0.51
        family = (self.pick(self.sur, self.sur_w) if r.random() < 0.6
                  else self.pick(self.tail, self.tail_w))[0]
        given = self.pick(*(self.gf, self.gf_w) if female else (self.gm, self.gm_w),
                          k=2 if r.random() < 0.4 else 1)
        year = 1925 + min(int(r.triangular(0, 101, 55)), 100)
        birth = f"{year}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"
        city, state, postal = self.pick(self.zips, self.zip_w)[0]
        return {
            "resourceType": "Patient", "id": f"p{i}",
            "identifier": [{"system": "urn:bench:mrn", "value": f"MRN-{i:07d}"}],
            "name": [{"use": "official", "family": family, "given": given}],
            "gender": "female" if female else "male", "birthDate": birth,
            "telecom": [{"system": "phone", "value": f"555-{r.randrange(10000):04d}",
                         "use": "home"}],
            "address": [{"line": [f"{r.randint(1, 999)} {r.choice(STREETS)} St"], "city": city,
                         "state": state, "postalCode": postal}],
        }

    def observations(self, i, birth):
        r = self.rng
        first = max(2014, int(birth[:4]))
        out = []
        for k in range(r.randint(15, 25)):
            lab = r.random() < 0.4
            code, display, unit, lo, hi = r.choice(LABS if lab else VITALS)
            cat = "laboratory" if lab else "vital-signs"
            year = r.randint(first, 2026) if first <= 2026 else 2026
            when = (f"{year}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"
                    f"T{r.randint(6, 20):02d}:{r.randrange(60):02d}:00Z")
            value = round(r.uniform(lo, hi), 1)
            out.append({
                "resourceType": "Observation", "id": f"o{i}-{k}", "status": "final",
                "category": [{"coding": [{"system": CATEGORY, "code": cat}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": code,
                                     "display": display}], "text": display},
                "subject": {"reference": f"Patient/p{i}"}, "effectiveDateTime": when,
                "valueQuantity": {"value": value, "unit": unit,
                                  "system": "http://unitsofmeasure.org", "code": unit},
            })
        return out


def main():
    n, outdir = int(sys.argv[1]), sys.argv[2]
    os.makedirs(outdir, exist_ok=True)
    gen = Gen()
    with open(os.path.join(outdir, "patients.ndjson.tmp"), "w") as pf, \
            open(os.path.join(outdir, "observations.ndjson.tmp"), "w") as of:
        for i in range(n):
            p = gen.patient(i)
            pf.write(json.dumps(p, ensure_ascii=False, separators=(",", ":")) + "\n")
            for o in gen.observations(i, p["birthDate"]):
                of.write(json.dumps(o, separators=(",", ":")) + "\n")
    for name in ("patients", "observations"):
        os.replace(os.path.join(outdir, f"{name}.ndjson.tmp"),
                   os.path.join(outdir, f"{name}.ndjson"))


if __name__ == "__main__":
    main()
