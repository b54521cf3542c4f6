"""Regenerate the sample roster, the templates and the visitors sample (deterministic).

    .venv/bin/python data/samples/make_roster.py

All names are fictional; ID numbers are valid GB 11643 numbers made with data.idcard.make_id
(area code 410225), phone numbers are fictional but well-formed.
"""

from __future__ import annotations

import datetime as dt
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from data import idcard, roster  # noqa: E402

AREA = "410225"
COUNTY, TOWNSHIP, VILLAGE = "兰考县", "城关镇", "幸福村"
SURNAMES = "王李张刘陈杨赵黄周吴徐孙马朱胡郭何高林罗"
MALE = ["德厚", "金山", "长顺", "保国", "富贵", "建业", "守田", "永福", "庆丰", "广才", "振华", "树根"]
FEMALE = ["秀英", "桂兰", "玉梅", "凤英", "淑珍", "翠花", "兰芝", "素琴", "春娥", "巧云", "玉珍", "月娥"]
CHILD = ["伟", "军", "敏", "静", "磊", "丽", "强", "芳", "洋", "娟", "涛", "霞"]
CITIES = ["郑州", "北京", "上海", "深圳", "广州", "杭州", "苏州", "开封"]
HEALTH = ["健康", "高血压", "糖尿病", "慢性支气管炎", "脑梗后遗症", "关节炎", "冠心病", "白内障"]
CATS = list(roster.CATEGORY_HEADERS)


def phone(rng: random.Random) -> str:
    return rng.choice(["138", "139", "150", "151", "158", "176", "185", "187", "199"]) + f"{rng.randrange(10**8):08d}"


CAT_PLAN = [  # (categories) — every category appears, several elders have more than one
    ["living_alone"], ["living_alone", "disabled_care"], ["empty_nest"], ["left_behind"],
    ["disabled_care"], ["severely_disabled"], ["family_planning"], ["living_alone", "family_planning"],
    ["empty_nest", "left_behind"], ["severely_disabled", "disabled_care"], ["living_alone"], ["empty_nest"],
]


def build(rng: random.Random) -> list[dict[str, str]]:
    return [elder_row(rng, i, CAT_PLAN[i % len(CAT_PLAN)]) for i in range(30)]


def elder_row(rng: random.Random, i: int, cats: list[str]) -> dict[str, str]:
    """One elder; the random draws keep their order so the sample files stay the same."""
    today = dt.date(2026, 11, 1)
    male = rng.random() < 0.45
    age = 62 + (i * 11) % 34  # 62..95
    born = dt.date(today.year - age, rng.randint(1, 10), rng.randint(1, 28))  # birthday passed by November
    idn = idcard.make_id(AREA, born, 100 + i * 7, "M" if male else "F")
    surname = SURNAMES[i % len(SURNAMES)]
    name = surname + rng.choice(MALE if male else FEMALE)
    group = i % 6 + 1
    disabled = "severely_disabled" in cats or "disabled_care" in cats and rng.random() < 0.5
    r = {
        "县(市、区)": COUNTY, "乡镇(街道)": TOWNSHIP, "村(居)": VILLAGE,
        "详细地址": f"幸福村{group}组{rng.randint(1, 60)}号",
        "是否居住在户籍所在地": "否" if i % 13 == 5 else "是",
        "姓名": name, "性别": "男" if male else "女", "公民身份号码": idn,
        "联系电话": "" if i % 5 == 3 else (f"0371-2{rng.randrange(10**6):06d}" if i % 9 == 4 else phone(rng)),
        "是否残疾": "是" if disabled else "否",
        "残疾人证号": (idn + f"{rng.randint(1, 4)}{rng.randint(1, 4)}") if disabled else "",
        "同意探访": "否" if i == 17 else "是",
        "同意向家属共享": "是" if i % 3 == 0 else "否",
        "首选联系时间": rng.choice(["09:00-11:00", "08:30-10:30", "15:00-17:00", "", "10:00-11:30"]),
        "首选联系方式": rng.choice(["电话", "电话", "电话", "上门", "Telegram"]) if i % 5 != 3 else "上门",
        "饮水安全": "否" if i % 11 == 2 else "是", "用电安全": "否" if i % 8 == 6 else "是",
        "住房安全": "否" if i % 10 == 7 else "是",
        "家庭月收入(元)": f"{rng.choice([600, 800, 1200, 1500, 2000, 2600])}.00",
        "月养老金及补贴(元)": f"{rng.choice([168, 213, 350, 520, 760, 1100])}.{rng.choice(['00', '50'])}",
        "备注": "耳背，说话需大声" if i % 7 == 2 else "",
    }
    for attr, col in roster.CATEGORY_HEADERS.items():
        r[col] = "是" if attr in cats else "否"
    add_contacts(rng, i, surname, r)
    add_household(rng, i, cats, (name, r["性别"], idn, male, born, surname), r)
    add_family(rng, i, cats, surname, r)
    add_support(rng, i, cats, r)
    return r


def add_contacts(rng: random.Random, i: int, surname: str, r: dict[str, str]) -> None:
    """Emergency contacts (children or neighbours), a second one for about half."""
    cs = surname + rng.choice(CHILD)
    r.update({"紧急联系人": cs, "紧急联系人关系": rng.choice(["儿子", "女儿", "侄子", "邻居", "村干部"]),
              "紧急联系人电话": phone(rng), "紧急联系人联系渠道": "短信"})
    if i % 2 == 0:
        r.update({"紧急联系人2": SURNAMES[(i + 5) % len(SURNAMES)] + rng.choice(CHILD),
                  "紧急联系人2关系": rng.choice(["邻居", "村网格员", "外甥女"]), "紧急联系人2电话": phone(rng),
                  "紧急联系人2联系渠道": "短信"})


def add_household(rng: random.Random, i: int, cats: list[str], head: tuple, r: dict[str, str]) -> None:
    """The elder is head (户主); a spouse for non-living-alone elders, a grandchild when left behind."""
    name, sex, idn, male, born, surname = head
    members = [(name, sex, idn, "户主", rng.choice(HEALTH))]
    if "living_alone" not in cats and i % 3 != 1:
        sp_male = not male
        sp_born = dt.date(born.year + rng.randint(-3, 3), rng.randint(1, 12), rng.randint(1, 28))
        sp_name = SURNAMES[(i + 3) % len(SURNAMES)] + rng.choice(MALE if sp_male else FEMALE)
        members.append((sp_name, "男" if sp_male else "女",
                        idcard.make_id(AREA, sp_born, 300 + i * 3, "M" if sp_male else "F"),
                        "配偶", rng.choice(HEALTH)))
    if "left_behind" in cats:
        gc_born = dt.date(2014 + i % 6, rng.randint(1, 12), rng.randint(1, 28))
        members.append((surname + rng.choice(CHILD) + "娃", "男", idcard.make_id(AREA, gc_born, 500 + i, "M"),
                        "孙子", "健康"))
    for n, (mn, ms, mid, rel, health) in enumerate(members, start=1):
        r.update(dict(zip(roster.household_headers(n),
                          [mn, ms, mid, rel, health, "是" if i % 4 == 1 else "否", "是" if i % 10 == 6 else "否"])))


def add_family(rng: random.Random, i: int, cats: list[str], surname: str, r: dict[str, str]) -> None:
    if "family_planning" not in cats and i % 3 == 0:
        nkids = 1 + i % 2
        for n in range(1, nkids + 1):
            r.update(dict(zip(roster.family_headers(n),
                              [surname + rng.choice(CHILD) + ("" if n == 1 else "二"), rng.choice(["儿子", "女儿"]),
                               phone(rng), rng.choice(CITIES), "Telegram" if n == 1 else "短信"])))


def add_support(rng: random.Random, i: int, cats: list[str], r: dict[str, str]) -> None:
    """帮扶: the village committee for about half, a social-work station for some."""
    if i % 2 == 1 or "severely_disabled" in cats:
        units = ["乡镇(街道)、村(居)民委员会"]
        names = ["幸福村村委会"]
        people = [rng.choice(["刘支书", "村主任郭红", "网格员马丽"])]
        measures = [rng.choice(["每月入户走访", "代缴水电费", "协助办理高龄津贴", "冬季送煤"])]
        if i % 4 == 3:
            units.append("社会组织")
            names.append("兰考县春晖社工站")
            people.append("社工周敏")
            measures.append("每周电话陪伴")
        r.update({"帮扶单位": "；".join(units), "帮扶单位名称": "；".join(names),
                  "帮扶责任人": "；".join(people), "帮扶措施": "；".join(measures)})


VISITORS = [  # channels mixed: village and civil-affairs staff on 企业微信, the others on Telegram
    ("马丽", "网格员", "13837800101", COUNTY, TOWNSHIP, VILLAGE, "企业微信", "MaLi"),
    ("周敏", "社会工作者", "13937800102", COUNTY, TOWNSHIP, "", "Telegram", ""),
    ("赵小雨", "志愿者", "15137800103", COUNTY, TOWNSHIP, VILLAGE, "Telegram", ""),
    ("孙医生", "家庭医生", "18737800104", COUNTY, TOWNSHIP, VILLAGE, "Telegram", ""),
    ("胡建国", "民政工作人员", "0371-26500105", COUNTY, TOWNSHIP, "", "企业微信", "HuJianGuo"),
    ("林主任", "主管", "13637800106", COUNTY, "", "", "企业微信", "LinZhuRen"),
    ("高大娘", "老年协会老伙伴", "", COUNTY, TOWNSHIP, VILLAGE, "Telegram", ""),
]


def jinmin(rows: list[dict[str, str]]) -> None:
    """The same village as a county's own spreadsheet: other headers, value codes, a title row."""
    from data.roster_mapping import HeaderMapping

    mapping = HeaderMapping.load(HERE / "mapping_jinmin.yml")
    header, theirs = mapping.to_theirs(rows)
    roster.write_table(HERE / "roster_jinmin.csv", header, theirs, preamble=mapping.preamble())


def main() -> None:
    rows = build(random.Random(20261128))
    jinmin(rows)
    roster.write_table(HERE / "roster_sample.csv", roster.headers(6), rows)
    roster.write_table(HERE / "roster_template.csv", roster.headers(6), [])
    roster.write_table(HERE / "roster_template.xlsx", roster.headers(6), [], blank_rows=200)
    roster.write_table(HERE / "visitors.csv", roster.VISITOR_HEADERS,
                       [dict(zip(roster.VISITOR_HEADERS, v)) for v in VISITORS])
    print(f"{len(rows)} elders -> {HERE / 'roster_sample.csv'}")


if __name__ == "__main__":
    main()
