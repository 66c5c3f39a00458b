"""CRM clean-up tools, acting on the sandbox contacts."""

from __future__ import annotations

from typing import Annotated, Any

from django.db import transaction
from django.db.models import Q
from pydantic import BaseModel, ConfigDict, Field, model_validator

from agents.models import RiskClass
from agents.tools.base import Tool, ToolContext, ToolError
from demo.models import CrmContact

ERR_PRIMARY_IN_DUPLICATES = "The primary contact cannot also be one of the duplicates."
ERR_NEEDS_A_QUERY = "Give an email or a name to search for."
ERR_NO_SUCH_CONTACT = "There is no contact {ids}."
ERR_ALREADY_MERGED = "Contact {id} was already merged into contact {into}."


class FindDuplicatesArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: Annotated[str | None, Field(max_length=254)] = None
    name: Annotated[str | None, Field(max_length=200)] = None

    @model_validator(mode="after")
    def one_query(self) -> FindDuplicatesArgs:
        if not (self.email or self.name):
            raise ValueError(ERR_NEEDS_A_QUERY)
        return self


class MergeContactsArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    primary_id: Annotated[int, Field(gt=0)]
    duplicate_ids: Annotated[list[Annotated[int, Field(gt=0)]], Field(min_length=1, max_length=10)]

    @model_validator(mode="after")
    def primary_not_duplicate(self) -> MergeContactsArgs:
        if self.primary_id in self.duplicate_ids:
            raise ValueError(ERR_PRIMARY_IN_DUPLICATES)
        if len(set(self.duplicate_ids)) != len(self.duplicate_ids):
            raise ValueError("duplicate_ids must not repeat an id.")
        return self


def contact_as_dict(contact: CrmContact) -> dict[str, Any]:
    return {
        "id": contact.pk,
        "name": contact.name,
        "email": contact.email,
        "company": contact.company,
        "phone": contact.phone,
        "created_at": contact.created_at.isoformat(),
    }


def find_duplicate_contacts(ctx: ToolContext, args: FindDuplicatesArgs) -> dict[str, Any]:
    query = Q()
    if args.email:
        query |= Q(email__iexact=args.email.strip())
    if args.name:
        query |= Q(name__iexact=args.name.strip())
    contacts = CrmContact.objects.filter(query, merged_into__isnull=True).order_by(
        "created_at", "pk"
    )
    return {"contacts": [contact_as_dict(c) for c in contacts[:25]]}


def merge_contacts(ctx: ToolContext, args: MergeContactsArgs) -> dict[str, Any]:
    key = ctx.require_key("merge_contacts")
    with transaction.atomic():
        ids = [args.primary_id, *args.duplicate_ids]
        contacts = {c.pk: c for c in CrmContact.objects.select_for_update().filter(pk__in=ids)}
        missing = sorted(set(ids) - set(contacts))
        if missing:
            raise ToolError(ERR_NO_SUCH_CONTACT.format(ids=", ".join(map(str, missing))))
        merged, replayed = [], []
        for dup_id in args.duplicate_ids:
            dup = contacts[dup_id]
            if dup.merged_into_id is not None:
                if dup.merge_key == key and dup.merged_into_id == args.primary_id:
                    replayed.append(dup_id)
                    continue
                raise ToolError(ERR_ALREADY_MERGED.format(id=dup_id, into=dup.merged_into_id))
            dup.merged_into_id = args.primary_id
            dup.merge_key = key
            dup.save(update_fields=["merged_into", "merge_key"])
            merged.append(dup_id)
    return {"primary_id": args.primary_id, "merged": merged, "replayed": replayed}


TOOLS = [
    Tool(
        name="find_duplicate_contacts",
        description="Find live CRM contacts sharing an email address or a name.",
        args_model=FindDuplicatesArgs,
        risk_class=RiskClass.READ,
        handler=find_duplicate_contacts,
    ),
    Tool(
        name="merge_contacts",
        description="Merge duplicate contacts into a primary contact (the duplicates are retired).",
        args_model=MergeContactsArgs,
        risk_class=RiskClass.WRITE,
        handler=merge_contacts,
        review_facts=(("Contacts found", "find_duplicate_contacts.contacts"),),
        in_database=True,
        facts=lambda args: {"records": len(args.duplicate_ids)},
    ),
]
