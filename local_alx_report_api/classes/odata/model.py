"""The feed's data model: the CourseProgress entity type, its CSDL document and the service
document (OData 4.0, CSDL XML and JSON format)."""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

NAMESPACE = "ALX"
ENTITY_SET = "CourseProgress"
ENTITY_TYPE = f"{NAMESPACE}.{ENTITY_SET}"


@dataclass(frozen=True)
class Property:
    name: str
    edm: str  # Edm.Int64 | Edm.String | Edm.DateTimeOffset | Edm.Decimal
    column: str  # in local_alx_api_reporting
    field: str | None  # the get_course_progress field whose switch hides it; None: always there
    nullable: bool = False  # a time whose stored 0 means "never": null in the feed
    max_length: int | None = None
    description: str = ""


PROPERTIES = (
    Property("userid", "Edm.Int64", "userid", None, description="User ID"),
    Property("firstname", "Edm.String", "firstname", "firstname", max_length=100, description="First name"),
    Property("lastname", "Edm.String", "lastname", "lastname", max_length=100, description="Last name"),
    Property("email", "Edm.String", "email", "email", max_length=100, description="Email address"),
    Property("courseid", "Edm.Int64", "courseid", None, description="Course ID"),
    Property("coursename", "Edm.String", "coursename", "coursename", max_length=1333, description="Course name"),
    Property("timecompleted", "Edm.DateTimeOffset", "timecompleted", "timecompleted", True,
             description="Completion time in the site's time zone"),
    Property("timecompleted_unix", "Edm.Int64", "timecompleted", "timecompleted_unix",
             description="Completion time (Unix), 0 when not completed"),
    Property("timestarted", "Edm.DateTimeOffset", "timestarted", "timestarted", True,
             description="Start time in the site's time zone"),
    Property("timestarted_unix", "Edm.Int64", "timestarted", "timestarted_unix",
             description="Start time (Unix), 0 when not started"),
    Property("percentage", "Edm.Decimal", "percentage", "percentage", description="Completion percentage"),
    Property("status", "Edm.String", "status", "status", max_length=20,
             description="completed, in_progress or not_started"),
    Property("lastupdated", "Edm.DateTimeOffset", "last_updated", None,
             description="When the row last changed (Power BI: detect data changes)"),
    Property("created", "Edm.DateTimeOffset", "created_at", None,
             description="When the row first entered the report; never changes (Power BI: RangeStart/RangeEnd)"),
)
KEY = ("userid", "courseid")


def properties(fields: tuple[str, ...]) -> tuple[Property, ...]:
    """The properties a company's caller sees: the key and the two dates always, the others when
    the company has their field switched on (the key stays: an entity needs it, decision 126)."""
    on = set(fields)
    return tuple(p for p in PROPERTIES if p.field is None or p.field in on)


def csdl(props: tuple[Property, ...]) -> bytes:
    """$metadata: the entity type and its container, with the capabilities the feed has."""
    lines = ['<?xml version="1.0" encoding="utf-8"?>',
             '<edmx:Edmx xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx" Version="4.0">',
             '<edmx:Reference Uri="https://oasis-tcs.github.io/odata-vocabularies/vocabularies/Org.OData.Core.V1.xml">',
             '<edmx:Include Namespace="Org.OData.Core.V1" Alias="Core"/></edmx:Reference>',
             '<edmx:Reference Uri="https://oasis-tcs.github.io/odata-vocabularies/vocabularies/'
             'Org.OData.Capabilities.V1.xml">',
             '<edmx:Include Namespace="Org.OData.Capabilities.V1" Alias="Capabilities"/></edmx:Reference>',
             '<edmx:DataServices>',
             f'<Schema xmlns="http://docs.oasis-open.org/odata/ns/edm" Namespace="{NAMESPACE}">',
             f'<EntityType Name="{ENTITY_SET}">',
             '<Key>' + "".join(f'<PropertyRef Name="{k}"/>' for k in KEY) + '</Key>']
    for p in props:
        facets = ' Precision="5" Scale="2"' if p.edm == "Edm.Decimal" else ""
        facets += f' MaxLength="{p.max_length}"' if p.max_length else ""
        lines.append(f'<Property Name="{p.name}" Type="{p.edm}" Nullable="{"true" if p.nullable else "false"}"'
                     f'{facets}><Annotation Term="Core.Description" String={quoteattr(p.description)}/></Property>')
    lines += ['</EntityType>',
              '<EntityContainer Name="Container">',
              f'<EntitySet Name="{ENTITY_SET}" EntityType="{ENTITY_TYPE}">',
              '<Annotation Term="Capabilities.ExpandRestrictions"><Record>'
              '<PropertyValue Property="Expandable" Bool="false"/></Record></Annotation>',
              '<Annotation Term="Capabilities.SearchRestrictions"><Record>'
              '<PropertyValue Property="Searchable" Bool="false"/></Record></Annotation>',
              '<Annotation Term="Capabilities.InsertRestrictions"><Record>'
              '<PropertyValue Property="Insertable" Bool="false"/></Record></Annotation>',
              '<Annotation Term="Capabilities.UpdateRestrictions"><Record>'
              '<PropertyValue Property="Updatable" Bool="false"/></Record></Annotation>',
              '<Annotation Term="Capabilities.DeleteRestrictions"><Record>'
              '<PropertyValue Property="Deletable" Bool="false"/></Record></Annotation>',
              '</EntitySet>',
              '</EntityContainer>',
              '</Schema>',
              '</edmx:DataServices>',
              '</edmx:Edmx>']
    return "\n".join(lines).encode()


def service_document(root: str) -> dict:
    return {"@odata.context": f"{root}$metadata",
            "value": [{"name": ENTITY_SET, "kind": "EntitySet", "url": ENTITY_SET}]}
