# Excerpt of google-research/FLAN flan/v2/templates.py (Apache-2.0, Copyright 2022 The FLAN Authors):
# the FewShotPattern class and the PATTERNS / FEWSHOT_PATTERNS entries of three CoT tasks, verbatim.
import dataclasses

@dataclasses.dataclass
class FewShotPattern:
  """Patterns for few-shot tasks.

  The few-shot input are composed by a few examplers followed by final_suffix:
  {exampler no. 1} + {exampler no. 2} + {exampler no. 3}... + {final_suffix}

  Each exampler has the following format:
  {inputs_prefix} + {inputs} + {x_y_delimiter} + {targets_prefix} + {targets} +
  {example_separator}
  """
  inputs: str
  targets: str
  inputs_prefix: str = ""
  targets_prefix: str = ""
  x_y_delimiter: str = "\n\n"
  example_separator: str = "\n\n\n"
  final_suffix: str = ""
  input_pattern: str = "{{inputs}}{final_suffix}"
  in_template_mix: bool = True

  @property
  def few_shot_kwargs(self):
    return dict(
        inputs_prefix=self.inputs_prefix,
        targets_prefix=self.targets_prefix,
        x_y_delimiter=self.x_y_delimiter,
        example_separator=self.example_separator,
        final_suffix=self.final_suffix,
        input_pattern=self.input_pattern)

  @property
  def combined_inputs(self):
    return self.inputs_prefix + self.inputs + self.x_y_delimiter

  @property
  def combined_targets(self):
    return self.targets_prefix + self.targets + self.example_separator

  @property
  def combined_inputs_w_target_prefix(self):
    return self.inputs_prefix + self.inputs + self.x_y_delimiter + (
        self.targets_prefix)

  @property
  def combined_targets_wo_target_prefix(self):
    return self.targets + self.example_separator

PATTERNS = {
    "cot_strategyqa": [
        ("{question}\nThink slowly and carefully, before giving your answer.",
         "{chain_of_thought}\nSo, the answer is {answer}."),
        ("{question} Please answer step by step:",
         "{chain_of_thought}\nSo, the final answer is {answer}."),
        ("{question}\nChain of thought:",
         "{chain_of_thought} The answer is {answer}."),
        ("Answer the following question by reasoning step-by-step. {question}",
         "{chain_of_thought} Therefore, the final answer is {answer}."),
        ("{question} Given the above question, please answer with reasoning "
         "first!", "{chain_of_thought}\nTherefore, the answer is {answer}."),
        ("{question} Think carefully first, then make a decision:",
         "{chain_of_thought} So, the answer is {answer}."),
        ("Q: {question} Now, let's think step by step:",
         "{chain_of_thought}\nThe answer: {answer}."),
        ("Answer the following question, but give the rationale first. "
         "{question}", "{chain_of_thought} So the final answer is {answer}."),
        ("{question} Hmmm, my chain of thoughts:",
         "{chain_of_thought} Final answer: {answer}."),
        ("Let's answer this question slowly: {question}\n",
         "{chain_of_thought} So the answer is {answer}."),
    ],
    "cot_creak": [
        ("Given the following question, let's solve step-by-step. {question}\n",
         "{chain_of_thought}\nThe final answer: {answer}."),
        ("My question: {question}\nPlease think gradually:",
         "{chain_of_thought}\nThus, the answer is {answer}."),
        ("Give the rationale and then the answer. {question}",
         "{chain_of_thought} The final answer: {answer}."),
        ("Q: {question}\nChain-of-thought:",
         "{chain_of_thought} The answer: {answer}."),
        ("{question}\nChain of thought and solution for this question is:",
         "{chain_of_thought}\nSo, the answer is {answer}."),
        ("Question: {question} Let's think first. Step-by-step reasoning:",
         "{chain_of_thought}\nSo, the final answer is {answer}."),
        ("{question}\nYour chain-of-thought:",
         "{chain_of_thought} The answer is {answer}."),
        ("{question} Step-by-step reasoning process:",
         "{chain_of_thought} Therefore, the final answer is {answer}."),
        ("{question} The thought process:",
         "{chain_of_thought}\nTherefore, the answer is {answer}."),
        ("{question} Let's think first. Step-by-step reasoning process:",
         "{chain_of_thought} So, the answer is {answer}."),
    ],
    "stream_aqua": [
        ("Q: {question} Let's give some random thoughts before answering.",
         "{chain_of_thought}\nTherefore, the answer is {answer}."),
        ("{question} Hmmm, my stream of consciousness:",
         "{chain_of_thought} So, the answer is {answer}."),
        ("Give a quick stream of consciousness before answering the following "
         "question. {question}", "{chain_of_thought}\nThe answer: {answer}."),
        ("Use some thinking to answer the following question. {question}",
         "{chain_of_thought} So the final answer is {answer}."),
        ("Student: {question}.\nAnother student: Let's say, hmmm...\n",
         "{chain_of_thought} Final answer: {answer}."),
        ("{question} Think first, then make a decision. Some random thoughts:",
         "{chain_of_thought} So the answer is {answer}."),
        ("{question} Now, let's think a bit. Some random thoughts:",
         "{chain_of_thought}\nThe final answer: {answer}."),
        ("{question} Stream of consciousness:",
         "{chain_of_thought}\nThus, the answer is {answer}."),
        ("Question: {question} Random thoughts:",
         "{chain_of_thought} The final answer: {answer}."),
        ("{question} OK. Let's think. Some random thoughts first:",
         "{chain_of_thought} The answer: {answer}."),
        ("Give stream of consciousness and then the final answer. {question}",
         "{chain_of_thought}\nThe final answer: {answer}."),
        ("{question} Stream of consciousness first, then make a decision:",
         "{chain_of_thought}\nThus, the answer is {answer}."),
        ("Question: {question} Let's think first. Some random reasoning:",
         "{chain_of_thought} The final answer: {answer}."),
        ("Some question: {question}\nSome stream of consciousness:",
         "{chain_of_thought} The answer: {answer}."),
        ("{question} Let's think first. Stream of consciousness:",
         "{chain_of_thought}\nSo, the answer is {answer}."),
    ],
}

FEWSHOT_PATTERNS = {
    "cot_strategyqa": [
        FewShotPattern(
            inputs="{question}",
            targets="{chain_of_thought}\nThe answer is {answer}.",
            x_y_delimiter="\n",
            example_separator="\n\n",
            in_template_mix=False),
        FewShotPattern(
            inputs="{question}",
            targets="{chain_of_thought}. The answer is: {answer}.",
            x_y_delimiter="\n",
            example_separator="\n\n",
            inputs_prefix="Question: ",
            targets_prefix="Answer: "),
        FewShotPattern(
            inputs="{question}",
            targets="My step-by-step reasoning: {chain_of_thought}\n"
            "So, the answer is {answer}.",
            x_y_delimiter="\n",
            example_separator="\n\n",
            inputs_prefix="Q--",
            targets_prefix="A--",
            in_template_mix=False),
        FewShotPattern(
            inputs="{question}\nRationale first then the answer.",
            targets="{chain_of_thought}. The answer is: {answer}.",
            x_y_delimiter="\n",
            example_separator="\n\n"),
        FewShotPattern(
            inputs="{question}",
            targets="{chain_of_thought}\nThe answer is {answer}.",
            inputs_prefix="Q: ",
            targets_prefix="A: ",
            x_y_delimiter="\n",
            example_separator="\n\n",
            in_template_mix=False),
        FewShotPattern(
            inputs="{question}",
            targets="Chain of thought: {chain_of_thought} "
            "The answer is {answer}.",
            x_y_delimiter="\n\n",
            example_separator="\n\n\n",
            inputs_prefix="[Question]: ",
            targets_prefix="[Answer]: ",
            in_template_mix=False),
        FewShotPattern(
            inputs="{question}",
            targets="My reasoning: {chain_of_thought}\nThe answer: {answer}.",
            x_y_delimiter="\n",
            example_separator="\n\n\n",
            inputs_prefix="*Q:* ",
            targets_prefix="*A:* ",
            in_template_mix=False),
        FewShotPattern(
            inputs="{question}\nPlease give rationale first, then the answer.",
            targets="{chain_of_thought}. The answer is: {answer}.",
            inputs_prefix="QUESTION: ",
            targets_prefix="ANSWER: ",
            x_y_delimiter="\n",
            example_separator="\n\n"),
        FewShotPattern(
            inputs="{question}",
            targets="{answer}\nExplanation: {chain_of_thought}",
            inputs_prefix="Q: ",
            targets_prefix="A: ",
            x_y_delimiter="\n",
            example_separator="\n\n",
            in_template_mix=False),
        FewShotPattern(
            inputs="{question}",
            targets="The detailed solution is: {chain_of_thought}.",
            x_y_delimiter="\n",
            example_separator="\n\n",
            inputs_prefix="Student question: ",
            targets_prefix="Teacher response: ",
            in_template_mix=False),
    ],
    "stream_aqua": [
        FewShotPattern(
            inputs="{question}",
            targets="OK... Stream of consciousness: {chain_of_thought}\n"
            "The answer is {answer}.",
            x_y_delimiter="\n",
            example_separator="\n\n",
            inputs_prefix="Q: ",
            targets_prefix="A: ",
            in_template_mix=False),
        FewShotPattern(
            inputs="{question}",
            targets="Stream of consciousness: {chain_of_thought} "
            "The answer is {answer}.",
            x_y_delimiter="\n",
            example_separator="\n--\n",
            inputs_prefix="q: ",
            targets_prefix="a: "),
        FewShotPattern(
            inputs="{question}",
            targets="{answer}\nStream of consciousness: {chain_of_thought}",
            x_y_delimiter="\n",
            example_separator="\n\n\n",
            inputs_prefix="",
            targets_prefix="Answer and stream of consciousness: ",
            in_template_mix=False),
        FewShotPattern(
            inputs="{question}",
            targets="{chain_of_thought} So the answer is: {answer}.",
            x_y_delimiter="\n--\n",
            example_separator="\n-----\n",
            in_template_mix=False),
        FewShotPattern(
            inputs="{question}",
            targets="{chain_of_thought}\nThe answer is {answer}.",
            x_y_delimiter="\n",
            example_separator="\n\n",
            inputs_prefix="Question: ",
            targets_prefix="Answer: ",
            in_template_mix=False),
        FewShotPattern(
            inputs="{question}",
            targets="{chain_of_thought} The answer is {answer}.",
            x_y_delimiter="\n",
            example_separator="\n--\n",
            inputs_prefix="q: ",
            targets_prefix="a: ",
            in_template_mix=False),
        FewShotPattern(
            inputs="{question}",
            targets="{answer}\nStream of consciousness:{chain_of_thought}",
            x_y_delimiter="\n",
            example_separator="\n\n\n",
            inputs_prefix="question:",
            targets_prefix="answer:",
            in_template_mix=False),
        FewShotPattern(
            inputs="{question}",
            targets="{chain_of_thought} So the answer is: {answer}.",
            x_y_delimiter="\n\n",
            example_separator="\n\n",
            in_template_mix=False),
        FewShotPattern(
            inputs="{question}",
            targets="OK... {chain_of_thought}\nThe answer is {answer}.",
            x_y_delimiter="\n",
            example_separator="\n\n",
            inputs_prefix="q: ",
            targets_prefix="a: ",
            in_template_mix=False),
        FewShotPattern(
            inputs="{question}",
            targets="Stream of consciousness: {chain_of_thought} "
            "The answer is {answer}.",
            x_y_delimiter="\n",
            example_separator="\n--\n",
            inputs_prefix="question: ",
            targets_prefix="answer: "),
    ],
    "cot_creak": [
        FewShotPattern(
            inputs="{question}",
            targets="The answer is {answer}.\n"
            "Chain of thoughts: {chain_of_thought}",
            x_y_delimiter="\n",
            example_separator="\n\n",
            inputs_prefix="Q: ",
            targets_prefix="A: ",
            in_template_mix=False),
        FewShotPattern(
            inputs="{question}",
            targets="I'm thinking hard. So here's my take: {chain_of_thought} "
            "The answer is {answer}.",
            x_y_delimiter="\n",
            example_separator="\n---\n",
            inputs_prefix="Ques: ",
            targets_prefix="Ans: ",
            in_template_mix=False),
        FewShotPattern(
            inputs="{question}",
            targets="{answer}\n{chain_of_thought}",
            x_y_delimiter="\n",
            example_separator="\n\n",
            inputs_prefix="",
            targets_prefix=""),
        FewShotPattern(
            inputs="{question}",
            targets="Let me think out loud. {chain_of_thought} "
            "The answer is {answer}.",
            x_y_delimiter="\n\n",
            example_separator="\n\n",
            in_template_mix=False),
        FewShotPattern(
            inputs="{question}",
            targets="The answer is {answer}.\n"
            "Explanation: {chain_of_thought}",
            x_y_delimiter="\n",
            example_separator="\n\n",
            inputs_prefix="Question: ",
            targets_prefix="Ans and explanation: ",
            in_template_mix=False),
        FewShotPattern(
            inputs="{question}",
            targets="Oh man, I think this is the solution: {chain_of_thought} "
            "The answer is {answer}.",
            x_y_delimiter="\n",
            example_separator="\n\n",
            inputs_prefix="Question part\n",
            targets_prefix="Answer part\n",
            in_template_mix=False),
        FewShotPattern(
            inputs="{question}",
            targets="{answer}\n{chain_of_thought}",
            x_y_delimiter="\n",
            example_separator="\n\n",
            inputs_prefix="**Q**\n",
            targets_prefix="**A**\n"),
        FewShotPattern(
            inputs="Question: {question}",
            targets="Let me think..... {chain_of_thought} "
            "The answer is {answer}.",
            x_y_delimiter="\n\n",
            example_separator="\n\n",
            in_template_mix=False),
        FewShotPattern(
            inputs="{question}",
            targets="The answer is {answer}.\n"
            "Chain of thoughts: {chain_of_thought}",
            x_y_delimiter="\n",
            example_separator="\n\n",
            inputs_prefix="Answer the following question: ",
            targets_prefix="My answer and thoughts: ",
            in_template_mix=False),
        FewShotPattern(
            inputs="{question}",
            targets="Here's my solution: {chain_of_thought} "
            "The answer is {answer}.",
            x_y_delimiter="\n",
            example_separator="\n****\n",
            inputs_prefix="[Ques]: ",
            targets_prefix="[Ans]: ",
            in_template_mix=False),
    ],
}
