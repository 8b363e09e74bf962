"""From a learned term to an equation: sparse regression with posterior uncertainty.

:func:`learned_term` evaluates a UDE's network on the region its data visit,
draw by draw; :func:`discover_term` regresses every draw onto a
:class:`CandidateLibrary` and reports each candidate's inclusion probability
and coefficient interval; :func:`discovered_specification` writes the
selected expression into a mechanistic model to refit with NUTS.
"""

from bayesude.symbolic.library import (
    CandidateLibrary as CandidateLibrary,
)
from bayesude.symbolic.library import (
    mechanistic_form as mechanistic_form,
)
from bayesude.symbolic.library import (
    polynomial_library as polynomial_library,
)
from bayesude.symbolic.regression import (
    LearnedTerm as LearnedTerm,
)
from bayesude.symbolic.regression import (
    TermDiscovery as TermDiscovery,
)
from bayesude.symbolic.regression import (
    discover_term as discover_term,
)
from bayesude.symbolic.regression import (
    discovered_specification as discovered_specification,
)
from bayesude.symbolic.regression import (
    learned_term as learned_term,
)
from bayesude.symbolic.regression import (
    sensitivity_table as sensitivity_table,
)
