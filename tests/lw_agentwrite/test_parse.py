"""The plan parser on plans as real models write them: the paper's format and its many deviations."""

import pytest
from lw_agentwrite import PlanParseError, parse_plan

# (reply, expected [(main_point, word_count)])
CORPUS = {
    "paper format": (
        "Paragraph 1 - Main Point: Introduce the history of the Silk Road - Word Count: 400 words\n"
        "Paragraph 2 - Main Point: Describe the goods that were traded - Word Count: 700 words\n"
        "Paragraph 3 - Main Point: Conclude with its legacy today - Word Count: 300 words",
        [
            ("Introduce the history of the Silk Road", 400),
            ("Describe the goods that were traded", 700),
            ("Conclude with its legacy today", 300),
        ],
    ),
    "preamble and postamble": (
        "Sure! Here is a detailed writing plan for your essay:\n\n"
        "Paragraph 1 - Main Point: Define renewable energy - Word Count: 250 words\n"
        "Paragraph 2 - Main Point: Solar and wind power - Word Count: 500 words\n\n"
        "This plan adds up to 750 words and covers the topic thoroughly.",
        [("Define renewable energy", 250), ("Solar and wind power", 500)],
    ),
    "markdown bold bullets": (
        "- **Paragraph 1** - **Main Point:** The morning routine of a lighthouse keeper - **Word Count:** 300 words\n"
        "- **Paragraph 2** - **Main Point:** A storm arrives - **Word Count:** 600 words\n",
        [("The morning routine of a lighthouse keeper", 300), ("A storm arrives", 600)],
    ),
    "en and em dashes": (
        "Paragraph 1 – Main Point: Early life in Vienna – Word Count: 350 words\n"
        "Paragraph 2 — Main Point: Years of exile — Word Count: 450 words",
        [("Early life in Vienna", 350), ("Years of exile", 450)],
    ),
    "section headers with colons": (
        "Section 1: Background on coral reefs (200 words)\n"
        "Section 2: Threats from ocean warming (500 words)\n"
        "Section 3: Restoration projects (300 words)",
        [("Background on coral reefs", 200), ("Threats from ocean warming", 500), ("Restoration projects", 300)],
    ),
    "missing word counts": (
        "Paragraph 1 - Main Point: What a neural network is\n"
        "Paragraph 2 - Main Point: How training works - Word Count: 800 words\n",
        [("What a neural network is", None), ("How training works", 800)],
    ),
    "numbered list": (
        "Here is my outline:\n"
        "1. Introduction to the city of Kyoto - 300 words\n"
        "2. Temples and shrines - 800 words\n"
        "3. Food culture - 500 words\n"
        "4. Conclusion - 200 words",
        [
            ("Introduction to the city of Kyoto", 300),
            ("Temples and shrines", 800),
            ("Food culture", 500),
            ("Conclusion", 200),
        ],
    ),
    "multi-line steps": (
        "### Paragraph 1\n"
        "- Main Point: The causes of the French Revolution\n"
        "- Word Count: 600 words\n\n"
        "### Paragraph 2\n"
        "- Main Point: The Reign of Terror\n"
        "- Word Count: 900 words\n",
        [("The causes of the French Revolution", 600), ("The Reign of Terror", 900)],
    ),
    "chinese paper format": (
        "段落1 - 主要内容：介绍长城的历史背景 - 字数：500字\n段落2 - 主要内容：描述长城的建筑特点 - 字数：800字\n",
        [("介绍长城的历史背景", 500), ("描述长城的建筑特点", 800)],
    ),
    "chinese ordinal headers": (
        "好的，以下是写作计划：\n第一段：春节的起源（约300字）\n第二段：春节的传统习俗（约600字）\n第三段：总结（200字）",
        [("春节的起源", 300), ("春节的传统习俗", 600), ("总结", 200)],
    ),
    "chinese full-width and no count": (
        "段落1 - 主要内容：人工智能的定义\n段落2 - 主要内容：人工智能的应用 - 字数：1000字",
        [("人工智能的定义", None), ("人工智能的应用", 1000)],
    ),
    "blank lines between steps": (
        "Paragraph 1 - Main Point: Hook the reader - Word Count: 200 words\n\n\n"
        "Paragraph 2 - Main Point: Present the argument - Word Count: 700 words\n\n",
        [("Hook the reader", 200), ("Present the argument", 700)],
    ),
    "ranges and thousands separators": (
        "Paragraph 1 - Main Point: Overview - Word Count: 200-400 words\n"
        "Paragraph 2 - Main Point: Deep dive - Word Count: 1,200 words",
        [("Overview", 300), ("Deep dive", 1200)],
    ),
    "total line ignored": (
        "1) Opening scene at the harbour (300 words)\n2) The chase (700 words)\nTotal: 1000 words",
        [("Opening scene at the harbour", 300), ("The chase", 700)],
    ),
    "json in a code fence": (
        'Here you go:\n```json\n{"steps": [{"main_point": "Intro", "word_count": 300},'
        ' {"main_point": "Body", "word_count": "500 words"}]}\n```',
        [("Intro", 300), ("Body", 500)],
    ),
    "step keyword and lowercase": (
        "step 1: set up the experiment, about 300 words\nstep 2: analyse the results, about 400 words",
        [("set up the experiment", 300), ("analyse the results", 400)],
    ),
    "paragraphs renumbered when the model skips numbers": (
        "Paragraph 1 - Main Point: A - Word Count: 300 words\nParagraph 3 - Main Point: B - Word Count: 300 words",
        [("A", 300), ("B", 300)],
    ),
    "keyword headers win over nested numbered sub-points": (
        "Paragraph 1 - Main Point: Benefits of exercise - Word Count: 500 words\n"
        "  1. heart health\n  2. mood\n"
        "Paragraph 2 - Main Point: Risks - Word Count: 300 words",
        [("Benefits of exercise", 500), ("Risks", 300)],
    ),
}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_parse_plan_corpus(name: str) -> None:
    reply, expected = CORPUS[name]
    plan = parse_plan(reply)
    assert [(s.main_point, s.word_count) for s in plan.steps] == expected
    assert [s.index for s in plan.steps] == list(range(1, len(expected) + 1))
    assert plan.raw == reply


@pytest.mark.parametrize("reply", ["", "   \n\n", "I'm sorry, I can't help with that.", "{not json"])
def test_parse_plan_raises_when_nothing_recoverable(reply: str) -> None:
    with pytest.raises(PlanParseError, match="no plan step"):
        parse_plan(reply)
